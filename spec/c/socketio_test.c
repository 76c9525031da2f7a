/* socketio_test: the Engine.IO/Socket.IO codec — hand-made cases, malformed
 * input, and every frame of the real CyTube 3.86 captures in
 * spec/fixtures/cytube-3.86 (DAZ_FIXTURES overrides the folder). */
#include <dirent.h>
#include <stdlib.h>

#include "cytube/socketio.h"
#include "tap.h"

static int decode_event(const char *frame, struct sio_packet *p, char *err)
{
    enum eio_type t;
    const char *pl;
    size_t pn;
    if (eio_decode(frame, strlen(frame), &t, &pl, &pn, err) != 0)
        return -1;
    if (t != EIO_MESSAGE) {
        snprintf(err, SIO_ERR_SIZE, "not a message");
        return -1;
    }
    return sio_decode(pl, pn, p, err);
}

static void test_engine(void)
{
    char err[SIO_ERR_SIZE];
    enum eio_type t;
    const char *pl;
    size_t pn;
    ok(eio_decode("2", 1, &t, &pl, &pn, err) == 0 && t == EIO_PING && pn == 0, "ping");
    ok(eio_decode("3probe", 6, &t, &pl, &pn, err) == 0 && t == EIO_PONG && pn == 5, "pong with payload");
    ok(eio_decode("", 0, &t, &pl, &pn, err) == -1, "empty frame refused (%s)", err);
    ok(eio_decode("7", 1, &t, &pl, &pn, err) == -1, "type 7 refused");
    ok(eio_decode("x", 1, &t, &pl, &pn, err) == -1, "non-digit type refused");

    struct eio_open o;
    const char *open = "{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":120000,\"maxPayload\":1048576}";
    ok(eio_parse_open(open, strlen(open), &o, err) == 0 && strcmp(o.sid, "abc") == 0 && o.ping_interval_ms == 25000 &&
           o.ping_timeout_ms == 120000 && o.max_payload == 1048576,
       "open packet fields");
    const char *bad[] = {
        "", "[]", "{}", "{\"sid\":\"\",\"pingInterval\":1,\"pingTimeout\":1}",
        "{\"sid\":\"a\",\"pingInterval\":0,\"pingTimeout\":1}", "{\"sid\":\"a\",\"pingInterval\":\"1\",\"pingTimeout\":1}",
        "{\"sid\":1,\"pingInterval\":1,\"pingTimeout\":1}", "{\"sid\":\"a\",\"pingInterval\":1}",
        "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":-5}", "{\"sid\":\"a\\u0000b\",\"pingInterval\":1,\"pingTimeout\":1}",
        "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1", "{\"sid\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"pingInterval\":1,\"pingTimeout\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(eio_parse_open(bad[i], strlen(bad[i]), &o, err) == -1, "bad open packet %zu refused (%s)", i, err);
}

static void test_socketio(void)
{
    char err[SIO_ERR_SIZE];
    struct sio_packet p;

    ok(decode_event("40", &p, err) == 0 && p.type == SIO_CONNECT && !p.data && strcmp(p.nsp, "/") == 0, "bare connect");
    sio_packet_clear(&p);
    ok(decode_event("40{\"sid\":\"x\"}", &p, err) == 0 && json_is_object(p.data), "connect with sid");
    sio_packet_clear(&p);
    ok(decode_event("41", &p, err) == 0 && p.type == SIO_DISCONNECT, "disconnect");
    sio_packet_clear(&p);
    ok(decode_event("44{\"message\":\"Rate limit exceeded\"}", &p, err) == 0 && p.type == SIO_CONNECT_ERROR, "connect error (EIO4)");
    sio_packet_clear(&p);
    ok(decode_event("44\"Rate limit exceeded\"", &p, err) == 0 && json_is_string(p.data), "connect error (EIO3 string)");
    sio_packet_clear(&p);

    ok(decode_event("42[\"chatMsg\",{\"msg\":\"hi\"}]", &p, err) == 0 && p.ack_id == -1, "event");
    is_str(sio_event_name(&p), "chatMsg", "event name");
    is_str(json_string_value(json_object_get(sio_event_arg(&p), "msg")), "hi", "event argument");
    sio_packet_clear(&p);
    ok(decode_event("42[\"closePoll\"]", &p, err) == 0 && sio_event_arg(&p) == NULL, "event without argument");
    sio_packet_clear(&p);
    ok(decode_event("4313[{\"a\":1}]", &p, err) == 0 && p.type == SIO_ACK && p.ack_id == 13, "ack with id 13");
    sio_packet_clear(&p);
    ok(decode_event("42/admin,7[\"x\",1]", &p, err) == 0 && strcmp(p.nsp, "/admin") == 0 && p.ack_id == 7,
       "namespace and ack id");
    sio_packet_clear(&p);
    ok(decode_event("42/admin", &p, err) == -1 || (p.data == NULL && strcmp(p.nsp, "/admin") == 0), "namespace only");
    sio_packet_clear(&p);
    ok(decode_event("42[7,\"x\"]", &p, err) == 0 && sio_event_name(&p) == NULL, "numeric event name decodes, has no string name");
    sio_packet_clear(&p);

    const char *bad[] = {
        "4", "49", "4a", "42", /* "42" alone is valid JS-side? no payload -> no name; see below */
        "42[\"joinChannel\",", "42{}", "42[]", "42[{}]", "42[null]", "41[1]", "40[1]", "40\"x\"", "44[1]",
        "43{}", "45-[\"x\"]", "46-[]", "42999999999999999999[\"x\"]", "42[\"x\"]trailing", "42\xff",
        "42/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,[\"x\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = decode_event(bad[i], &p, err);
        if (strcmp(bad[i], "42") == 0) {
            /* socket.io-parser accepts an EVENT without data; it has no name. */
            ok(rc == 0 && sio_event_name(&p) == NULL, "bare 42 decodes without a name");
        } else {
            ok(rc == -1 && p.data == NULL, "malformed %zu refused: %s", i, rc == -1 ? err : "accepted");
        }
        sio_packet_clear(&p);
    }

    size_t n;
    json_t *arg = json_pack("{s:s, s:{}}", "msg", "hé \"q\" <b>", "meta");
    char *f = sio_encode_event("chatMsg", arg, -1, &n);
    is_str(f, "42[\"chatMsg\",{\"msg\":\"hé \\\"q\\\" <b>\",\"meta\":{}}]", "encode chatMsg");
    ok(f && n == strlen(f), "encoded length");
    free(f);
    f = sio_encode_event("newPoll", arg, 13, &n);
    ok(f && strncmp(f, "4213[\"newPoll\",", 15) == 0, "encode with ack id");
    free(f);
    f = sio_encode_event("playNext", NULL, -1, &n);
    is_str(f, "42[\"playNext\"]", "encode without argument");
    free(f);
    json_decref(arg);
}

/* Every frame in the captures: server frames decode; client event frames
 * decode and re-encode to the same bytes; the one malformed frame fails. */
static void test_fixtures(void)
{
    const char *dir = getenv("DAZ_FIXTURES") ? getenv("DAZ_FIXTURES") : "spec/fixtures/cytube-3.86";
    DIR *d = opendir(dir);
    ok(d != NULL, "fixture folder %s", dir);
    if (!d)
        return;
    int files = 0, frames = 0, decoded = 0, roundtrip = 0, roundtrip_ok = 0, bad_seen = 0, bad_refused = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".txt") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        files++;
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        int expect_bad = strcmp(e->d_name, "bad-frames.txt") == 0;
        while ((got = getline(&line, &cap, fp)) > 0) {
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
                line[--got] = '\0';
            long ms;
            char client[64], dirn[8];
            int off = 0;
            if (sscanf(line, " %ld %63s %7s %n", &ms, client, dirn, &off) < 3 || off == 0)
                continue;
            if (strcmp(dirn, "evt") == 0)
                continue;
            const char *frame = line + off;
            size_t flen = strlen(frame);
            frames++;
            char err[SIO_ERR_SIZE] = "";
            enum eio_type t;
            const char *pl;
            size_t pn;
            int rc = eio_decode(frame, flen, &t, &pl, &pn, err);
            struct sio_packet p = {0};
            if (rc == 0 && t == EIO_OPEN) {
                struct eio_open o;
                rc = eio_parse_open(pl, pn, &o, err);
            } else if (rc == 0 && t == EIO_MESSAGE) {
                rc = sio_decode(pl, pn, &p, err);
            }
            int is_bad = expect_bad && strcmp(frame, "42[\"joinChannel\",") == 0;
            if (is_bad) {
                bad_seen++;
                bad_refused += rc != 0;
            } else if (rc == 0) {
                decoded++;
            } else {
                printf("# %s: cannot decode %s: %s\n", e->d_name, frame, err);
            }
            if (rc == 0 && strcmp(dirn, "out") == 0 && p.type == SIO_EVENT && sio_event_name(&p)) {
                roundtrip++;
                size_t n;
                char *again = sio_encode_event(sio_event_name(&p), sio_event_arg(&p), p.ack_id, &n);
                if (again && strcmp(again, frame) == 0)
                    roundtrip_ok++;
                else
                    printf("# %s: re-encoded %s as %s\n", e->d_name, frame, again ? again : "(null)");
                free(again);
            }
            sio_packet_clear(&p);
        }
        free(line);
        fclose(fp);
    }
    closedir(d);
    ok(files == 8, "read the 8 captures (%d)", files);
    ok(frames > 400 && decoded == frames - bad_seen, "every good frame decodes (%d of %d)", decoded, frames - bad_seen);
    ok(roundtrip > 20 && roundtrip == roundtrip_ok, "client events re-encode byte for byte (%d of %d)", roundtrip_ok, roundtrip);
    ok(bad_seen == 1 && bad_refused == 1, "the malformed frame in bad-frames.txt is refused");
}

int main(void)
{
    test_engine();
    test_socketio();
    test_fixtures();
    return tap_done();
}
