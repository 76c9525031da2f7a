/* http_guard: the SSRF check — is a connected address loopback, link-local,
 * private, unique-local or unspecified, and does the operator's allow list
 * (CIDR or host:port) make an exception — plus the URL host:port parser it
 * needs. Pure: no I/O. Uses the socket address types only. */
#ifndef DAZ_HTTP_GUARD_H
#define DAZ_HTTP_GUARD_H

#include <stddef.h>
#include <sys/socket.h>

#define HTTP_GUARD_MAX_ALLOW 256
#define HTTP_GUARD_HOST_MAX 256

struct http_allow {
    int is_cidr;
    int family;                  /* AF_INET or AF_INET6 (CIDR) */
    unsigned char addr[16];
    int prefix;
    char host[HTTP_GUARD_HOST_MAX]; /* host:port entries, lower-case */
    int port;
};

/* Zero-initialised is an empty list; http_guard_free releases it. */
struct http_guard {
    struct http_allow *allow;
    int count, cap;
};

/* Adds "10.0.0.0/8", "::1/128", "192.168.1.5" (a /32) or "host:port"
 * ("[::1]:8080" for IPv6). Returns 0, or -1 with a reason in err. */
int http_guard_add(struct http_guard *g, const char *entry, char *err, size_t errlen);
void http_guard_free(struct http_guard *g);

/* 1 when the address is one a chat-supplied URL must not reach. IPv4-mapped
 * IPv6 addresses are judged as the IPv4 address they carry. */
int http_address_is_private(const struct sockaddr *sa);

/* 1 when connecting to `sa` is allowed: a public address, or one the allow
 * list covers — by CIDR, or by host:port where host is the URL's host
 * (`url_host`, may be NULL) or the address itself, and port the address's. */
int http_guard_allows(const struct http_guard *g, const struct sockaddr *sa, const char *url_host);

/* The host of an http(s) URL, lower-case and without IPv6 brackets, and its
 * port (the scheme's default when absent). Returns 0, or -1 when the URL is
 * not http:// or https:// with a host. */
int http_url_host_port(const char *url, char *host, size_t hostlen, int *port);

#endif
