// Linux calls the agent needs that Swift's Glibc module does not expose.
#pragma once
/// Asks the kernel to send `sig` to the calling process when its parent dies (prctl).
int stowage_set_parent_death_signal(int sig);
