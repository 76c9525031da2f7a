/* embedded: see embedded.h. */
#include "core/embedded.h"

#include <lauxlib.h>
#include <lua.h>

/* package.preload loader: upvalue 1 is the module's index. */
static int load_embedded(lua_State *L)
{
    const struct embedded_lua *m = &embedded_lua_modules[lua_tointeger(L, lua_upvalueindex(1))];
    if (luaL_loadbufferx(L, m->text, m->len, m->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

void embedded_lua_preload(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (int i = 0; embedded_lua_modules[i].name; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, embedded_lua_modules[i].name);
    }
    lua_pop(L, 2);
}
