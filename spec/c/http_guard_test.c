/* http_guard: which addresses a chat-supplied URL may reach, the allow list
 * (CIDR and host:port), and the URL host:port parser. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "http/guard.h"
#include "tap.h"

static struct sockaddr_storage ss;

static const struct sockaddr *addr(const char *text, int port)
{
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)port);
        inet_pton(AF_INET6, text, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((unsigned short)port);
        inet_pton(AF_INET, text, &a->sin_addr);
    }
    return (const struct sockaddr *)&ss;
}

int main(void)
{
    static const char *private_addrs[] = {
        "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.10",
        "169.254.169.254", "169.254.0.1", "100.64.0.1", "224.0.0.1", "255.255.255.255",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "::127.0.0.1",
    };
    for (size_t i = 0; i < sizeof private_addrs / sizeof *private_addrs; i++)
        ok(http_address_is_private(addr(private_addrs[i], 80)), "%s is refused", private_addrs[i]);
    static const char *public_addrs[] = {
        "1.1.1.1", "8.8.8.8", "172.32.0.1", "172.15.255.255", "192.169.0.1", "100.128.0.1", "169.253.1.1",
        "2606:4700:4700::1111", "2001:db8::1", "::ffff:8.8.8.8", "64:ff9b::808:808",
    };
    for (size_t i = 0; i < sizeof public_addrs / sizeof *public_addrs; i++)
        ok(!http_address_is_private(addr(public_addrs[i], 80)), "%s is public", public_addrs[i]);

    struct http_guard g;
    memset(&g, 0, sizeof g);
    char err[200];
    ok(!http_guard_allows(&g, addr("127.0.0.1", 8080), NULL), "empty allow list: loopback refused");
    ok(http_guard_allows(&g, addr("8.8.8.8", 443), NULL), "empty allow list: public allowed");
    ok(http_guard_add(&g, "10.0.0.0/8", err, sizeof err) == 0, "add a CIDR");
    ok(http_guard_add(&g, "127.0.0.1:8123", err, sizeof err) == 0, "add an address:port");
    ok(http_guard_add(&g, "Intranet.Example:8443", err, sizeof err) == 0, "add a host:port");
    ok(http_guard_add(&g, "fd00::/8", err, sizeof err) == 0, "add an IPv6 CIDR");
    ok(http_guard_add(&g, "[::1]:9000", err, sizeof err) == 0, "add an [IPv6]:port");
    ok(http_guard_add(&g, "192.168.7.7", err, sizeof err) == 0, "add a single address");
    ok(http_guard_allows(&g, addr("10.200.3.4", 80), NULL), "CIDR covers 10.200.3.4");
    ok(http_guard_allows(&g, addr("::ffff:10.9.9.9", 80), NULL), "IPv4 CIDR covers the mapped address");
    ok(!http_guard_allows(&g, addr("11.0.0.1", 80), NULL) || !http_address_is_private(addr("11.0.0.1", 80)),
       "11.0.0.1 is outside and public");
    ok(http_guard_allows(&g, addr("127.0.0.1", 8123), NULL), "address:port allows that port");
    ok(!http_guard_allows(&g, addr("127.0.0.1", 8124), NULL), "... but not another port");
    ok(http_guard_allows(&g, addr("192.168.1.1", 8443), "intranet.example"), "host:port by the URL's host");
    ok(!http_guard_allows(&g, addr("192.168.1.1", 8443), "other.example"), "... not for another host");
    ok(http_guard_allows(&g, addr("fd99::5", 80), NULL), "IPv6 CIDR");
    ok(!http_guard_allows(&g, addr("fc00::5", 80), NULL), "... only its prefix");
    ok(http_guard_allows(&g, addr("::1", 9000), NULL), "[::1]:9000");
    ok(http_guard_allows(&g, addr("192.168.7.7", 1), NULL), "a single address is a /32");
    ok(!http_guard_allows(&g, addr("192.168.7.8", 1), NULL), "... and only that one");

    ok(http_guard_add(&g, "10.0.0.0/33", err, sizeof err) == -1, "bad prefix refused: %s", err);
    ok(http_guard_add(&g, "example.com", err, sizeof err) == -1, "a host without a port refused: %s", err);
    ok(http_guard_add(&g, "example.com:0", err, sizeof err) == -1, "port 0 refused: %s", err);
    ok(http_guard_add(&g, "example.com/8", err, sizeof err) == -1, "a host with a prefix refused: %s", err);
    ok(http_guard_add(&g, "", err, sizeof err) == -1, "empty refused");

    http_guard_free(&g);
    ok(g.count == 0 && g.allow == NULL, "freed");

    char host[256];
    int port;
    ok(http_url_host_port("http://Example.COM/x", host, sizeof host, &port) == 0 && port == 80, "http default port");
    is_str(host, "example.com", "host lower-cased");
    ok(http_url_host_port("https://a.b:8443?q", host, sizeof host, &port) == 0 && port == 8443, "explicit port");
    is_str(host, "a.b", "host before the port");
    ok(http_url_host_port("https://user:pw@h.example/", host, sizeof host, &port) == 0 && port == 443, "userinfo");
    is_str(host, "h.example", "host after userinfo");
    ok(http_url_host_port("http://[::1]:9000/", host, sizeof host, &port) == 0 && port == 9000, "IPv6 literal");
    is_str(host, "::1", "brackets dropped");
    ok(http_url_host_port("ftp://x/", host, sizeof host, &port) == -1, "ftp refused");
    ok(http_url_host_port("http:///x", host, sizeof host, &port) == -1, "no host refused");
    ok(http_url_host_port("http://x:99999/", host, sizeof host, &port) == -1, "bad port refused");
    return tap_done();
}
