/* socketio: Engine.IO v4 and Socket.IO v5 packets as pure functions — text
 * frame in, packet out, and back. No I/O, no globals; fuzzed (fuzz/).
 * Uses jansson for the JSON parts. */
#ifndef DAZ_SOCKETIO_H
#define DAZ_SOCKETIO_H

#include <jansson.h>
#include <stddef.h>

/* Engine.IO packet types (the first character of a frame). */
enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
};

/* Socket.IO packet types (the first character inside an Engine.IO message). */
enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
};

#define SIO_ERR_SIZE 128
#define EIO_SID_MAX 64

/* The Engine.IO open packet `0{"sid":...,"pingInterval":...}`. */
struct eio_open {
    char sid[EIO_SID_MAX + 1];
    long ping_interval_ms;
    long ping_timeout_ms;
    long max_payload;
};

/* A decoded Socket.IO packet. `data` is owned (free with sio_packet_clear). */
struct sio_packet {
    enum sio_type type;
    char nsp[64];      /* "/" when absent */
    long long ack_id;  /* -1 when absent */
    json_t *data;      /* NULL when absent */
};

/* Splits an Engine.IO text frame: type and the payload after the type digit.
 * Returns 0, or -1 with `err` filled for anything malformed (empty frame,
 * unknown type). The payload points into `frame`. */
int eio_decode(const char *frame, size_t len, enum eio_type *type, const char **payload,
               size_t *payload_len, char err[SIO_ERR_SIZE]);

/* Parses the open packet's JSON payload. Requires sid (a non-empty string of
 * at most EIO_SID_MAX), pingInterval and pingTimeout (positive integers);
 * maxPayload is optional (0 when absent). Returns 0 or -1 with err. */
int eio_parse_open(const char *payload, size_t len, struct eio_open *out, char err[SIO_ERR_SIZE]);

/* Decodes a Socket.IO packet (the payload of an Engine.IO message) with the
 * validity rules of socket.io-parser 4.2.3: CONNECT carries an object or
 * nothing, DISCONNECT nothing, EVENT a non-empty array starting with a string
 * or number, ACK an array, CONNECT_ERROR an object or a string. Binary
 * packets are refused (CyTube never sends them). Returns 0 or -1 with err;
 * on error `out` holds nothing to free. */
int sio_decode(const char *payload, size_t len, struct sio_packet *out, char err[SIO_ERR_SIZE]);
void sio_packet_clear(struct sio_packet *p);

/* For an EVENT: its name (data[0] as a string; a number is refused here),
 * and its first argument (data[1], borrowed, NULL when absent). */
const char *sio_event_name(const struct sio_packet *p);
json_t *sio_event_arg(const struct sio_packet *p);

/* Encodes `42[<name>,<arg>]` (with the ack id between "42" and the array
 * when ack_id >= 0; `arg` borrowed and left out when NULL). Returns a
 * malloc'd NUL-terminated frame and its length, or NULL (out of memory,
 * unencodable value). */
char *sio_encode_event(const char *name, const json_t *arg, long long ack_id, size_t *len);

/* Fixed frames the client sends. */
#define EIO_FRAME_PONG "3"
#define SIO_FRAME_CONNECT "40"
#define SIO_FRAME_DISCONNECT "41"

#endif
