/* dynreg: dynamic registration on the public listener (SPEC §9): a device of
 * a product that allows it gets its own secret at first boot, signed for with
 * the product's secret. POST /auth/register/device is the form of the vendor
 * SDK 4.x dynreg component, POST /register/dev the Tencent IoT Explorer C
 * SDK's (its sdk_src/services/dynreg/dynreg.c). */
#ifndef BOOTSTRAPD_DYNREG_H
#define BOOTSTRAPD_DYNREG_H

#include "http.h"

/* The route handlers (ARG: the struct server_thread). */
void dynreg_on_alibaba(struct http_request *req, void *arg);
void dynreg_on_tencent(struct http_request *req, void *arg);

#endif
