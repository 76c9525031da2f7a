/* socketio: see socketio.h. The rules follow engine.io-parser 5.0.5 and
 * socket.io-parser 4.2.3 (the versions CyTube 3.86 pins). */
#include "cytube/socketio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ACK_DIGITS 15 /* stays exact in a double, as on the JS side */

static int fail(char err[SIO_ERR_SIZE], const char *what)
{
    if (err)
        snprintf(err, SIO_ERR_SIZE, "%s", what);
    return -1;
}

int eio_decode(const char *frame, size_t len, enum eio_type *type, const char **payload,
               size_t *payload_len, char err[SIO_ERR_SIZE])
{
    if (!frame || len == 0)
        return fail(err, "empty Engine.IO frame");
    if (frame[0] < '0' || frame[0] > '6')
        return fail(err, "unknown Engine.IO packet type");
    *type = (enum eio_type)(frame[0] - '0');
    *payload = frame + 1;
    *payload_len = len - 1;
    return 0;
}

static json_t *parse_json(const char *text, size_t len, char err[SIO_ERR_SIZE])
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v && err)
        snprintf(err, SIO_ERR_SIZE, "invalid JSON: %.100s", jerr.text);
    return v;
}

static int positive_int(json_t *obj, const char *key, long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 0x7fffffffL)
        return -1;
    *out = (long)json_integer_value(v);
    return 0;
}

int eio_parse_open(const char *payload, size_t len, struct eio_open *out, char err[SIO_ERR_SIZE])
{
    memset(out, 0, sizeof *out);
    json_t *v = parse_json(payload, len, err);
    if (!v)
        return -1;
    int rc = -1;
    if (!json_is_object(v)) {
        fail(err, "open packet is not a JSON object");
        goto cleanup;
    }
    json_t *sid = json_object_get(v, "sid");
    if (!json_is_string(sid) || json_string_length(sid) == 0 || json_string_length(sid) > EIO_SID_MAX ||
        strlen(json_string_value(sid)) != json_string_length(sid)) {
        fail(err, "open packet has no usable sid");
        goto cleanup;
    }
    if (positive_int(v, "pingInterval", &out->ping_interval_ms) != 0 ||
        positive_int(v, "pingTimeout", &out->ping_timeout_ms) != 0) {
        fail(err, "open packet lacks pingInterval/pingTimeout");
        goto cleanup;
    }
    json_t *mp = json_object_get(v, "maxPayload");
    if (mp && !json_is_null(mp)) {
        if (!json_is_integer(mp) || json_integer_value(mp) < 0) {
            fail(err, "open packet has a bad maxPayload");
            goto cleanup;
        }
        out->max_payload = json_integer_value(mp) > 0x7fffffffL ? 0x7fffffffL : (long)json_integer_value(mp);
    }
    memcpy(out->sid, json_string_value(sid), json_string_length(sid) + 1);
    rc = 0;
cleanup:
    json_decref(v);
    return rc;
}

static int payload_valid(enum sio_type type, const json_t *data)
{
    switch (type) {
    case SIO_CONNECT:
        return json_is_object(data);
    case SIO_DISCONNECT:
        return 0; /* must carry nothing */
    case SIO_CONNECT_ERROR:
        return json_is_string(data) || json_is_object(data);
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        json_t *first = json_array_get(data, 0);
        return json_is_array(data) && (json_is_string(first) || json_is_number(first));
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return json_is_array(data);
    }
    return 0;
}

int sio_decode(const char *s, size_t len, struct sio_packet *out, char err[SIO_ERR_SIZE])
{
    memset(out, 0, sizeof *out);
    out->ack_id = -1;
    strcpy(out->nsp, "/");
    if (!s || len == 0)
        return fail(err, "empty Socket.IO packet");
    if (s[0] < '0' || s[0] > '6')
        return fail(err, "unknown Socket.IO packet type");
    enum sio_type type = (enum sio_type)(s[0] - '0');
    if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK)
        return fail(err, "binary Socket.IO packets are not supported");

    size_t i = 1; /* next unread character */
    if (i < len && s[i] == '/') {
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        size_t n = i - start;
        if (n >= sizeof out->nsp)
            return fail(err, "namespace too long");
        if (memchr(s + start, '\0', n))
            return fail(err, "NUL in namespace");
        memcpy(out->nsp, s + start, n);
        out->nsp[n] = '\0';
        if (i < len)
            i++; /* the comma */
    }
    if (i < len && s[i] >= '0' && s[i] <= '9') {
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i - start > MAX_ACK_DIGITS)
            return fail(err, "ack id too long");
        long long id = 0;
        for (size_t k = start; k < i; k++)
            id = id * 10 + (s[k] - '0');
        out->ack_id = id;
    }
    if (i < len) {
        json_t *data = parse_json(s + i, len - i, err);
        if (!data)
            return -1;
        if (!payload_valid(type, data)) {
            json_decref(data);
            out->ack_id = -1;
            return fail(err, "invalid payload for the packet type");
        }
        out->data = data;
    }
    out->type = type;
    return 0;
}

void sio_packet_clear(struct sio_packet *p)
{
    if (!p)
        return;
    json_decref(p->data);
    p->data = NULL;
}

const char *sio_event_name(const struct sio_packet *p)
{
    if (p->type != SIO_EVENT)
        return NULL;
    json_t *first = json_array_get(p->data, 0);
    return json_is_string(first) ? json_string_value(first) : NULL;
}

json_t *sio_event_arg(const struct sio_packet *p)
{
    if (p->type != SIO_EVENT)
        return NULL;
    return json_array_get(p->data, 1);
}

char *sio_encode_event(const char *name, const json_t *arg, long long ack_id, size_t *len)
{
    char *frame = NULL, *body = NULL;
    json_t *arr = json_array();
    json_t *jname = name ? json_string(name) : NULL;
    if (!arr || !jname || json_array_append_new(arr, jname) != 0)
        goto cleanup;
    jname = NULL;
    if (arg && json_array_append(arr, (json_t *)arg) != 0)
        goto cleanup;
    body = json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!body)
        goto cleanup;
    char id[24] = "";
    if (ack_id >= 0)
        snprintf(id, sizeof id, "%lld", ack_id);
    size_t n = 2 + strlen(id) + strlen(body);
    frame = malloc(n + 1);
    if (!frame)
        goto cleanup;
    snprintf(frame, n + 1, "42%s%s", id, body);
    if (len)
        *len = n;
cleanup:
    json_decref(jname);
    json_decref(arr);
    free(body);
    return frame;
}
