/* lua_rooms: builds the CyTube rooms from the validated config (core.*) and
 * gives Lua the read-only room state: the global `rooms` (also `daz.rooms`)
 * with rooms.get(channel) and rooms.list(). Uses cytube, Lua, jansson. */
#ifndef DAZ_LUA_ROOMS_H
#define DAZ_LUA_ROOMS_H

#include <lua.h>
#include <uv.h>

#include "core/bus.h"
#include "cytube/rooms.h"

/* Creates the rooms core from config table `config_ref` (a registry ref in
 * L). Returns NULL after logging why. */
struct cytube *lua_rooms_create(lua_State *L, int config_ref, uv_loop_t *loop, struct bus *bus);

/* Sets the globals `rooms` and `daz.rooms` (call after lua_api_open). */
void lua_rooms_open(lua_State *L, struct cytube *cy);
/* Detaches Lua from the rooms (before cytube_free): rooms.get returns nil. */
void lua_rooms_close(void);

#endif
