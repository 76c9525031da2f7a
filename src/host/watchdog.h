/* watchdog: arms the Lua instruction budget only for code that has run
 * longer than a threshold. A count hook makes every Lua instruction go
 * through the debug machinery (about ten times slower), so handlers run
 * without one; a thread watches the running one and, past the threshold,
 * signals the loop thread, whose signal handler sets the count hook —
 * lua_sethook is safe to call from a signal handler (Lua manual §4.7).
 * Uses pthreads and signals. */
#ifndef DAZ_WATCHDOG_H
#define DAZ_WATCHDOG_H

#include <lua.h>

/* `arm` runs in signal-handler context on the loop thread, with the Lua
 * state that has run too long; it must only call lua_sethook. */
typedef void (*watchdog_arm_fn)(lua_State *L);

/* Starts the watch thread; call from the loop thread. 0, or -1 (logged). */
int watchdog_start(long threshold_us, watchdog_arm_fn arm);
void watchdog_stop(void);

/* Around every stretch of Lua execution that the budget covers. enter
 * returns what was running before, for leave to restore (nesting). */
lua_State *watchdog_enter(lua_State *L);
void watchdog_leave(lua_State *previous);

#endif
