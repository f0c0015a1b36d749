#include <malloc.h>
#include <sys/prctl.h>
#include "agent_sys.h"

int stowage_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int stowage_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n); }
