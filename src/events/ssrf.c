/* Where webhook deliveries may go: https URLs of public addresses. The
 * address is checked again on every connection (src/events/worker.c, curl's
 * open-socket callback), so a name that resolves to a private address later
 * is refused too. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_events.h"

static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

bool mb_webhook_allow_http(void)
{
    return env_on("WEBHOOK_ALLOW_HTTP");
}

static bool v4_blocked(uint32_t a)
{
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xA9FE ||
           (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 || (a >> 22) == (100u << 2 | 1u) ||
           (a >> 28) == 0xE || (a >> 28) == 0xF;
}

bool mb_addr_blocked(const struct sockaddr *sa)
{
    if (env_on("WEBHOOK_ALLOW_PRIVATE"))
        return false;
    if (sa->sa_family == AF_INET)
        return v4_blocked(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return true;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4;
        memcpy(&v4, a->s6_addr + 12, 4);
        return v4_blocked(ntohl(v4));
    }
    return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
           IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xFE) == 0xFC;
}

bool mb_webhook_url_ok(const char *url, char *why, size_t whylen)
{
    if (strlen(url) > MB_WEBHOOK_URL_MAX) {
        snprintf(why, whylen, "must be at most %d bytes", MB_WEBHOOK_URL_MAX);
        return false;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL;
    bool ok = false;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, whylen, "must be an absolute https URL");
        goto out;
    }
    if (strcasecmp(scheme, "https") != 0 &&
        !(strcasecmp(scheme, "http") == 0 && mb_webhook_allow_http())) {
        snprintf(why, whylen, "must be an https URL");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(why, whylen, "must not hold credentials");
        goto out;
    }
    /* A literal address is checked now; a name when connecting. */
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    char h[64];
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && hl - 2 < sizeof(h)) {
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
    } else {
        snprintf(h, sizeof(h), "%s", host);
    }
    if ((inet_pton(AF_INET, h, &a4.sin_addr) == 1 && mb_addr_blocked((struct sockaddr *)&a4)) ||
        (inet_pton(AF_INET6, h, &a6.sin6_addr) == 1 && mb_addr_blocked((struct sockaddr *)&a6)) ||
        strcasecmp(h, "localhost") == 0) {
        if (!getenv("WEBHOOK_ALLOW_PRIVATE") || strcmp(getenv("WEBHOOK_ALLOW_PRIVATE"), "1")) {
            snprintf(why, whylen, "must not point to a loopback, private or link-local address");
            goto out;
        }
    }
    ok = true;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_url_cleanup(u);
    return ok;
}
