/* socketio_fuzz: libFuzzer target for the Engine.IO/Socket.IO codec. Every
 * input is treated as one text frame from the server: it must either be
 * refused cleanly or decode into packets that re-encode without trouble.
 * Built and run by `make fuzz`. Uses socketio, jansson. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cytube/socketio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SIO_ERR_SIZE];
    enum eio_type type;
    const char *payload;
    size_t plen;
    if (eio_decode((const char *)data, size, &type, &payload, &plen, err) != 0)
        return 0;
    if (type == EIO_OPEN) {
        struct eio_open o;
        if (eio_parse_open(payload, plen, &o, err) == 0 && (o.ping_interval_ms <= 0 || o.sid[0] == '\0'))
            abort();
        return 0;
    }
    if (type != EIO_MESSAGE)
        return 0;
    struct sio_packet p;
    if (sio_decode(payload, plen, &p, err) != 0) {
        if (p.data)
            abort(); /* a refusal must leave nothing to free */
        return 0;
    }
    const char *name = sio_event_name(&p);
    if (name) {
        size_t n;
        char *again = sio_encode_event(name, sio_event_arg(&p), p.ack_id, &n);
        if (again) {
            /* What we encode must decode again to the same name. */
            struct sio_packet q;
            if (sio_decode(again + 1, n - 1, &q, err) != 0 || !sio_event_name(&q) ||
                strcmp(sio_event_name(&q), name) != 0)
                abort();
            sio_packet_clear(&q);
            free(again);
        }
    }
    sio_packet_clear(&p);
    return 0;
}
