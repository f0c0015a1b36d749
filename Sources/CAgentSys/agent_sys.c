#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/types.h>
#include <malloc.h>
#include <sys/prctl.h>
#include "agent_sys.h"

int stowage_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int stowage_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n); }

int stowage_open_unnamed(const char *dir) { return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600); }

int stowage_punch_hole(int fd, long long offset, long long len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
}

long stowage_splice_to_pipe(int in, long long *offset, int out, long len) {
    off64_t off = (off64_t)*offset;
    ssize_t n = splice(in, &off, out, NULL, (size_t)len, SPLICE_F_MORE);
    if (n > 0) *offset = (long long)off;
    return (long)n;
}
