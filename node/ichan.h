/* One end of a socketpair between two processes of a node, carrying
 * mm_imsg frames (node/core/mm_imsg.h) on the process's event loop. */
#ifndef ICHAN_H
#define ICHAN_H

#include <stddef.h>
#include <stdint.h>

#include "mm_imsg.h"

struct event_base;
struct ichan;

/* A whole frame: its header and body (valid during the call). */
typedef void (*ichan_frame_cb)(struct ichan *ic,
    const struct mm_imsg_hdr *h, const uint8_t *body, void *arg);
/* The other end closed, or sent a frame that is not one (why says which,
 * logged by the caller); the channel is to be freed. */
typedef void (*ichan_closed_cb)(struct ichan *ic, const char *why,
    void *arg);

/* Takes fd (non-blocking from here; closed with the channel). NULL when
 * out of memory. */
struct ichan *ichan_new(struct event_base *base, int fd, ichan_frame_cb frame,
    ichan_closed_cb closed, void *arg);
void ichan_free(struct ichan *ic);

/* Queues a frame; 0, or -1 when the other end is not reading (more than
 * ICHAN_OUT_MAX bytes queued) or the body is over MM_IMSG_BODY_MAX. */
#define ICHAN_OUT_MAX (8 * 1024 * 1024)
int ichan_send(struct ichan *ic, uint8_t type, uint16_t src, uint16_t dst,
    uint32_t id, const uint8_t *body, size_t len);
/* A frame as received (header and body), to pass on unchanged but for
 * its destination. */
int ichan_forward(struct ichan *ic, const struct mm_imsg_hdr *h,
    uint16_t dst, const uint8_t *body);

#endif
