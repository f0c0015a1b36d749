// Linux calls that Swift's Glibc module does not expose (the agent's, and `stowage backup
// --policy`'s, which the scheduler starts).
#pragma once
/// Asks the kernel to send `sig` to the calling process when its parent dies (prctl).
int stowage_set_parent_death_signal(int sig);
/// The commit of this build (git's short hash, "-dirty" when the tree had changes), or "unknown".
const char *stowage_build_commit(void);
/// Caps glibc's malloc arenas (mallopt M_ARENA_MAX); 1 when set.
int stowage_limit_malloc_arenas(int n);
/// A file with no name in `dir` (O_TMPFILE, mode 0600, read and write): nothing of it is
/// left on disk once the descriptor is closed, however the process ends. -1 and errno when
/// the file system cannot.
int stowage_open_unnamed(const char *dir);
/// Frees the blocks of `len` bytes at `offset` (FALLOC_FL_PUNCH_HOLE, size kept): 0 or -1.
int stowage_punch_hole(int fd, long long offset, long long len);
/// Moves up to `len` bytes of file `in` at `*offset` into the pipe `out` without copying them
/// through user space (splice; `*offset` advanced): bytes moved, or -1 and errno.
long stowage_splice_to_pipe(int in, long long *offset, int out, long len);
