// The commit this build was made from, for `stowage --version`. scripts/build-info.sh
// writes build_commit.h (not tracked) before every build; a build without it (a source
// tarball, a bare `swift build`) says "unknown" rather than guess.
#if __has_include("build_commit.h")
#include "build_commit.h"
#endif
#ifndef STOWAGE_COMMIT
#define STOWAGE_COMMIT "unknown"
#endif
#include "agent_sys.h"

const char *stowage_build_commit(void) { return STOWAGE_COMMIT; }
