/* The HTTP stack alone (scripts/bench.sh, run `ceiling`): Ulfius and libmicrohttpd set up as
 * the service sets them up (a thread per connection, poll, 40 KB of connection memory), with
 * no work of the service's own: no token, no line, no version read, no cache. A request with
 * If-None-Match gets a 304; any other gets a 200 with a JSON body of the size given. Both carry
 * the headers a cached list answer carries.
 *
 * Replayed with the very request files, Lua script and wrk of the `warm` and `304` runs, its
 * 304 ÷ 200 rate is the most a service on this stack can show between a 304 and a cache hit of
 * that size: every cost the service adds falls on both answers and brings the ratio nearer 1.
 *
 *   http-ceiling PORT BODY_BYTES */
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ulfius.h>
#include <unistd.h>

/* Ulfius' own per-request bookkeeping, which its start function only installs when given no
 * options of ours (src/http/server.c calls them the same way). */
void *ulfius_uri_logger(void *cls, const char *uri);
void mhd_request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                           enum MHD_RequestTerminationCode toe);

static char *body;
static size_t body_len;

static void common_headers(struct _u_response *res)
{
    u_map_put(res->map_header, "X-Request-Id", "6e05eeaf-f18a-4f3f-8142-368ea501b183");
    u_map_put(res->map_header, "traceparent",
              "00-531cd0e54ba788ce0f94c627b817eea3-7bfacf27b59d9dfd-01");
    u_map_put(res->map_header, "RateLimit-Policy",
              "\"subject\";q=10000;w=60, \"partner\";q=30000;w=60");
    u_map_put(res->map_header, "RateLimit", "\"subject\";r=9999;t=1, \"partner\";r=29999;t=1");
    u_map_put(res->map_header, "Cache-Control", "private, no-cache");
    u_map_put(res->map_header, "ETag", "W/\"43-0-3.cd7a3716991c3712\"");
}

static int answer(const struct _u_request *req, struct _u_response *res, void *cls)
{
    (void)cls;
    common_headers(res);
    if (u_map_get_case(req->map_header, "If-None-Match") != NULL) {
        res->status = 304;
        return U_CALLBACK_COMPLETE;
    }
    u_map_put(res->map_header, "Content-Type", "application/json");
    ulfius_set_binary_body_response(res, 200, body, body_len);
    return U_CALLBACK_COMPLETE;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: http-ceiling PORT BODY_BYTES\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long n = atol(argv[2]);
    if (port <= 0 || port > 65535 || n < 2 || n > 1 << 24) {
        fprintf(stderr, "http-ceiling: bad port or body size\n");
        return 2;
    }
    body_len = (size_t)n;
    body = malloc(body_len);
    if (body == NULL)
        return 1;
    memset(body, 'x', body_len); /* a JSON string of that size */
    body[0] = '"';
    body[body_len - 1] = '"';

    struct _u_instance inst;
    if (ulfius_init_instance(&inst, (unsigned)port, NULL, NULL) != U_OK)
        return 1;
    inst.allowed_post_processor = U_POST_PROCESS_NONE;
    ulfius_set_default_endpoint(&inst, &answer, NULL);
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)mhd_request_completed, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)ulfius_uri_logger, NULL},
        {MHD_OPTION_THREAD_STACK_SIZE, 2 * 1024 * 1024, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 40 * 1024, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (ulfius_start_framework_with_mhd_options(&inst, flags, ops) != U_OK) {
        fprintf(stderr, "http-ceiling: cannot listen on port %d\n", port);
        return 1;
    }
    fprintf(stderr, "http-ceiling on port %d, 200 bodies of %zu bytes\n", port, body_len);
    for (;;)
        pause(); /* until killed */
}
