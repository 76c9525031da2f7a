/* http_guard: see guard.h. */
#include "http/guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void lower_copy(char *dst, size_t n, const char *src, size_t len)
{
    if (len >= n)
        len = n - 1;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[len] = '\0';
}

static int parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int http_guard_add(struct http_guard *g, const char *entry, char *err, size_t errlen)
{
    if (g->count >= HTTP_GUARD_MAX_ALLOW) {
        snprintf(err, errlen, "at most %d allow entries", HTTP_GUARD_MAX_ALLOW);
        return -1;
    }
    if (g->count == g->cap) {
        int cap = g->cap ? g->cap * 2 : 4;
        struct http_allow *list = realloc(g->allow, (size_t)cap * sizeof *list);
        if (!list) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        g->allow = list;
        g->cap = cap;
    }
    struct http_allow a;
    memset(&a, 0, sizeof a);
    char buf[HTTP_GUARD_HOST_MAX + 16];
    if (strlen(entry) >= sizeof buf || !*entry) {
        snprintf(err, errlen, "%s: not a CIDR or host:port", entry);
        return -1;
    }
    strcpy(buf, entry);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    /* An address (with an optional /prefix) is a CIDR entry. */
    if (inet_pton(AF_INET, buf, a.addr) == 1 || inet_pton(AF_INET6, buf, a.addr) == 1) {
        a.is_cidr = 1;
        a.family = strchr(buf, ':') ? AF_INET6 : AF_INET;
        int max = a.family == AF_INET ? 32 : 128;
        a.prefix = max;
        if (slash) {
            char *end;
            long p = strtol(slash + 1, &end, 10);
            if (!slash[1] || *end || p < 0 || p > max) {
                snprintf(err, errlen, "%s: the prefix must be 0..%d", entry, max);
                return -1;
            }
            a.prefix = (int)p;
        }
        g->allow[g->count++] = a;
        return 0;
    }
    if (slash) {
        snprintf(err, errlen, "%s: not a CIDR (address/prefix) or host:port", entry);
        return -1;
    }
    const char *host = buf, *port;
    size_t hostlen;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "%s: write an IPv6 host:port as [addr]:port", entry);
            return -1;
        }
        host = buf + 1;
        hostlen = (size_t)(close - host);
        port = close + 2;
    } else {
        char *colon = strrchr(buf, ':');
        if (!colon || colon == buf) {
            snprintf(err, errlen, "%s: not a CIDR or host:port", entry);
            return -1;
        }
        hostlen = (size_t)(colon - buf);
        port = colon + 1;
    }
    if (parse_port(port, &a.port) != 0 || hostlen == 0) {
        snprintf(err, errlen, "%s: the port must be 1..65535", entry);
        return -1;
    }
    lower_copy(a.host, sizeof a.host, host, hostlen);
    g->allow[g->count++] = a;
    return 0;
}

void http_guard_free(struct http_guard *g)
{
    free(g->allow);
    g->allow = NULL;
    g->count = g->cap = 0;
}

static int v4_private(const unsigned char *b)
{
    return b[0] == 0 ||                                  /* 0.0.0.0/8 "this network" */
           b[0] == 10 ||                                 /* 10/8 */
           b[0] == 127 ||                                /* loopback */
           (b[0] == 169 && b[1] == 254) ||               /* link-local, metadata 169.254.169.254 */
           (b[0] == 172 && (b[1] & 0xf0) == 16) ||       /* 172.16/12 */
           (b[0] == 192 && b[1] == 168) ||               /* 192.168/16 */
           (b[0] == 100 && (b[1] & 0xc0) == 64) ||       /* 100.64/10 carrier-grade NAT */
           (b[0] == 192 && b[1] == 0 && b[2] == 0) ||    /* 192.0.0/24 IETF protocol assignments */
           (b[0] == 198 && (b[1] & 0xfe) == 18) ||       /* 198.18/15 benchmarking */
           b[0] >= 224;                                  /* multicast, reserved, broadcast */
}

/* The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d,
 * compatible ::a.b.c.d, NAT64 64:ff9b::/96), or NULL. */
static const unsigned char *embedded_v4(const unsigned char *b)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char zeros[12] = {0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return b + 12;
    if (memcmp(b, zeros, 12) == 0 && (b[12] | b[13] | b[14] | b[15]) && !(b[12] == 0 && b[13] == 0 && b[14] == 0))
        return b + 12; /* ::a.b.c.d (deprecated), but not ::1 or :: */
    return NULL;
}

static int v6_private(const unsigned char *b)
{
    static const unsigned char zeros[16] = {0};
    const unsigned char *v4 = embedded_v4(b);
    if (v4)
        return v4_private(v4);
    if (memcmp(b, zeros, 15) == 0 && (b[15] == 0 || b[15] == 1))
        return 1;                                        /* :: unspecified, ::1 loopback */
    return (b[0] & 0xfe) == 0xfc ||                      /* fc00::/7 unique-local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||    /* fe80::/10 link-local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) ||    /* fec0::/10 site-local (deprecated) */
           b[0] == 0xff;                                 /* multicast */
}

int http_address_is_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_private((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_private(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return 1; /* unix sockets and the rest: never from a chat URL */
}

static int prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int http_guard_allows(const struct http_guard *g, const struct sockaddr *sa, const char *url_host)
{
    if (!http_address_is_private(sa))
        return 1;
    int family = sa->sa_family, port = 0;
    const unsigned char *addr = NULL;
    unsigned char v4buf[4];
    if (family == AF_INET) {
        addr = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (family == AF_INET6) {
        addr = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    } else {
        return 0;
    }
    char text[INET6_ADDRSTRLEN] = "";
    inet_ntop(family, addr, text, sizeof text);
    const unsigned char *v4 = family == AF_INET6 ? embedded_v4(addr) : NULL;
    if (v4) {
        memcpy(v4buf, v4, 4);
        inet_ntop(AF_INET, v4buf, text, sizeof text);
    }
    for (int i = 0; i < g->count; i++) {
        const struct http_allow *a = &g->allow[i];
        if (a->is_cidr) {
            if (a->family == family && prefix_match(a->addr, addr, a->prefix))
                return 1;
            if (v4 && a->family == AF_INET && prefix_match(a->addr, v4buf, a->prefix))
                return 1;
        } else if (a->port == port &&
                   (strcmp(a->host, text) == 0 || (url_host && strcmp(a->host, url_host) == 0))) {
            return 1;
        }
    }
    return 0;
}

int http_url_host_port(const char *url, char *host, size_t hostlen, int *port)
{
    int https;
    if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        url += 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        url += 8;
    } else {
        return -1;
    }
    size_t auth = strcspn(url, "/?#");
    const char *at = memchr(url, '@', auth);
    while (at) { /* userinfo: the host starts after the last '@' */
        const char *next = memchr(at + 1, '@', auth - (size_t)(at + 1 - url));
        if (!next)
            break;
        at = next;
    }
    if (at) {
        auth -= (size_t)(at + 1 - url);
        url = at + 1;
    }
    const char *h = url, *colon = NULL;
    size_t hl;
    if (*url == '[') {
        const char *close = memchr(url, ']', auth);
        if (!close)
            return -1;
        h = url + 1;
        hl = (size_t)(close - h);
        if ((size_t)(close + 1 - url) < auth) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(url, ':', auth);
        hl = colon ? (size_t)(colon - url) : auth;
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    lower_copy(host, hostlen, h, hl);
    *port = https ? 443 : 80;
    if (colon) {
        char num[8];
        size_t nl = auth - (size_t)(colon + 1 - url);
        if (nl == 0) /* "host:" means the default port */
            return 0;
        if (nl >= sizeof num)
            return -1;
        memcpy(num, colon + 1, nl);
        num[nl] = '\0';
        if (parse_port(num, port) != 0)
            return -1;
    }
    return 0;
}
