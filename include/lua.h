/* lua: the Redis Lua scripts in src/lua/, embedded at build time. */
#ifndef BOOTSTRAPD_LUA_H
#define BOOTSTRAPD_LUA_H

extern const char lua_step_read[];      /* a batch step's open rows (worker) */
extern const char lua_apply_products[]; /* a step's product rows (worker) */
extern const char lua_apply_devices[];  /* a step's device rows of one group (worker) */
extern const char lua_record[];         /* a step's results and counts (worker) */
extern const char lua_create[];         /* a new batch and its steps (admin) */
extern const char lua_retry[];          /* a failed batch back to work (admin) */
extern const char lua_fail[];           /* a failed attempt at a step (worker) */
extern const char lua_prune[];          /* batch retention (worker) */
extern const char lua_activate[];       /* a successful bootstrap (device endpoint) */
extern const char lua_register[];       /* device registration (admin) */
extern const char lua_unregister[];     /* a cluster registration taken back (admin) */
extern const char lua_schema_check[];   /* the store's layout version (readiness, worker) */
extern const char lua_put_product[];    /* product create/update (admin) */
extern const char lua_notify_sent[];    /* a notify taken by its broker: the device's side (worker) */
extern const char lua_notify_mark[];    /* a notify's state in its batch (worker) */
extern const char lua_product_secret[]; /* a product's secret rotated (admin) */
extern const char lua_dynreg[];
extern const char lua_device_secret[];
extern const char lua_subscribe[];
extern const char lua_hooks_trim[];
extern const char lua_hooks_backlog[];  /* a push subscription's backlog (admin) */     /* the push subscriptions' events all have had (worker) */      /* a push subscription made or removed (admin) */
extern const char lua_registration[];   /* a registration call's record (admin, device endpoint) */  /* a device's secret reset (admin) */         /* a dynamic registration (device endpoint) */
extern const char lua_codes[];          /* region and instance codes given and read (all) */
extern const char lua_notify_ack[];     /* a device's answer to a notify (worker) */

#endif
