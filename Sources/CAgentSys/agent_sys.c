#include <sys/prctl.h>
#include "agent_sys.h"

int stowage_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
