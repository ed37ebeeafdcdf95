/* _fastseg: the native twin of runtime/segment.py (`py_split`, `py_split_tcp`) and
 * runtime/coalesce.py (`py_plan`), byte for byte; the Python code is the reference.
 *
 * Rule 1: every read of packet bytes is checked against the length first: the input came
 *         from the network (after decryption) or from the kernel.
 * Rule 2: results are exactly the Python ones (tests/dataplane/test_native_seg.py); a run of
 *         coalesced segments is one contiguous bytes object instead of an iovec of pieces.
 * Rule 3: `plan` first takes a strong reference to every packet, so that no Python code run
 *         by an allocation (a finalizer) can free a packet under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define VNET_SIZE 12
#define F_NEEDS_CSUM 0x01
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_ECN 0x80
#define FL_CSUM_PARTIAL 0x01
#define FL_CONTINUES 0x02
#define PROTO_TCP 6
#define PROTO_UDP 17
#define T_FIN 0x01
#define T_SYN 0x02
#define T_RST 0x04
#define T_PSH 0x08
#define T_URG 0x20
#define T_CWR 0x80
#define REFUSED (T_SYN | T_RST | T_URG | T_CWR)
#define ENDS (T_FIN | T_PSH)
#define MAX_TOTAL 65535

static PyObject *PLAIN; /* vnet.PLAIN: twelve zero bytes */

/* ---- bytes and sums ------------------------------------------------------------------ */

static inline unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static inline void put16le(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* checksum.fold: carries folded until the sum fits 16 bits */
static inline uint64_t fold(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return s;
}

/* two folds, as segment.split_tcp writes them (not a full fold for every input) */
static inline uint64_t fold2(uint64_t s)
{
    s = (s & 0xFFFF) + (s >> 16);
    return (s & 0xFFFF) + (s >> 16);
}

/* checksum.ones_sum: the data as a big-endian number modulo 0xFFFF (2**32 = 1 mod 0xFFFF) */
static unsigned ones_sum(const uint8_t *p, Py_ssize_t n)
{
    uint64_t s = 0;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4)
        s += be32(p + i);
    if (i + 2 <= n) {
        s += be16(p + i);
        i += 2;
    }
    if (i < n)
        s += (unsigned)p[i] << 8;
    return (unsigned)(s % 0xFFFF);
}

/* checksum.l4_layout: 1 and (start, proto) for TCP/UDP right after the IP header, else 0 */
static int l4_layout(const uint8_t *p, Py_ssize_t n, Py_ssize_t *start, unsigned *proto)
{
    if (n < 20)
        return 0;
    if (p[0] >> 4 == 4) {
        *start = (p[0] & 0x0F) * 4;
        *proto = p[9];
    } else if (p[0] >> 4 == 6 && n >= 40) {
        *start = 40;
        *proto = p[6];
    } else {
        return 0;
    }
    if (*proto == PROTO_TCP)
        return n >= *start + 18;
    if (*proto == PROTO_UDP)
        return n >= *start + 8;
    return 0;
}

static inline Py_ssize_t check_offset(unsigned proto) { return proto == PROTO_TCP ? 16 : 6; }

/* checksum.address_sum; the caller knows n >= 20 (v4) or n >= 40 (others) */
static uint64_t address_sum(const uint8_t *p)
{
    uint64_t s = 0;
    int v4 = p[0] >> 4 == 4;
    const uint8_t *a = p + (v4 ? 12 : 8);
    for (int i = 0; i < (v4 ? 8 : 32); i += 2)
        s += be16(a + i);
    return s;
}

/* checksum.complete_at: a new packet with the checksum at start+offset completed (for a
 * field past the end Python's slicing appends it, so this does too) */
static PyObject *complete_at(const uint8_t *p, Py_ssize_t n, Py_ssize_t start, Py_ssize_t offset)
{
    Py_ssize_t at = start + offset;
    Py_ssize_t prefix = at < n ? at : n, rest = at + 2 < n ? n - (at + 2) : 0;
    unsigned check = ~ones_sum(p + (start < n ? start : n), start < n ? n - start : 0) & 0xFFFF;
    if (check == 0 && offset == 6)
        check = 0xFFFF;
    PyObject *out = PyBytes_FromStringAndSize(NULL, prefix + 2 + rest);
    if (out == NULL)
        return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(o, p, prefix);
    put16(o + prefix, check);
    memcpy(o + prefix + 2, p + n - rest, rest);
    return out;
}

static PyObject *pair(PyObject *packet, long flags)
{
    PyObject *f = PyLong_FromLong(flags);
    if (f == NULL) {
        Py_DECREF(packet);
        return NULL;
    }
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(packet);
        Py_DECREF(f);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, packet);
    PyTuple_SET_ITEM(t, 1, f);
    return t;
}

static PyObject *list_of(PyObject *item)
{
    if (item == NULL)
        return NULL;
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(item);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, item);
    return list;
}

/* ---- segment.py ---------------------------------------------------------------------- */

/* segment._single: carried partial when the layout says what the vnet header says */
static PyObject *single(const uint8_t *p, Py_ssize_t n, Py_ssize_t start, Py_ssize_t offset)
{
    Py_ssize_t l4;
    unsigned proto;
    if (l4_layout(p, n, &l4, &proto) && l4 == start && check_offset(proto) == offset) {
        PyObject *packet = PyBytes_FromStringAndSize((const char *)p, n);
        return packet == NULL ? NULL : pair(packet, FL_CSUM_PARTIAL);
    }
    PyObject *done = complete_at(p, n, start, offset);
    return done == NULL ? NULL : pair(done, 0);
}

/* segment._cuttable: the headers can be rewritten per segment */
static int cuttable(const uint8_t *p, Py_ssize_t l4, Py_ssize_t head, Py_ssize_t largest,
                    Py_ssize_t smallest)
{
    if (head - l4 < 20)
        return 0;
    if (p[0] >> 4 == 4)
        return l4 >= 12 && !(l4 & 1) && head + largest <= 0xFFFF;
    return l4 >= 6 && head + smallest >= 40 && head + largest - 40 <= 0xFFFF; /* so n >= 40 */
}

typedef struct {
    const uint8_t *p;
    Py_ssize_t l4, head, payload, mss;
    int v4, partial;
    unsigned tflags;
    uint32_t seq0;
    uint64_t psum, rest;
    unsigned ident0;
} Cut;

/* segment i of the cut: header copied and patched, then its piece of payload */
static PyObject *segment(const Cut *c, Py_ssize_t i)
{
    Py_ssize_t off = i * c->mss, chunk = c->payload - off < c->mss ? c->payload - off : c->mss;
    Py_ssize_t l4 = c->l4, tcp_len = c->head - l4 + chunk;
    PyObject *out = PyBytes_FromStringAndSize(NULL, c->head + chunk);
    if (out == NULL)
        return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(o, c->p, c->head);
    memcpy(o + c->head, c->p + c->head + off, chunk);
    unsigned f = off + chunk == c->payload ? c->tflags : c->tflags & ~(unsigned)(T_FIN | T_PSH);
    if (i)
        f &= ~(unsigned)T_CWR;
    if (c->v4) {
        unsigned total = (unsigned)(l4 + tcp_len), ident = (c->ident0 + (unsigned)i) & 0xFFFF;
        put16(o + 2, total);
        put16(o + 4, ident);
        put16(o + 10, ~(unsigned)fold2(c->rest + total + ident) & 0xFFFF);
    } else {
        put16(o + 4, (unsigned)(l4 - 40 + tcp_len));
    }
    put32(o + l4 + 4, c->seq0 + (uint32_t)off);
    o[l4 + 13] = (uint8_t)f;
    put16(o + l4 + 16, (unsigned)fold2(c->psum + (uint64_t)tcp_len));
    if (c->partial)
        return pair(out, i ? FL_CSUM_PARTIAL | FL_CONTINUES : FL_CSUM_PARTIAL);
    put16(o + l4 + 16, ~ones_sum(o + l4, c->head + chunk - l4) & 0xFFFF);
    return pair(out, i ? FL_CONTINUES : 0);
}

static void cut_ip(Cut *c)
{
    const uint8_t *p = c->p;
    uint64_t words = 0;
    for (Py_ssize_t i = 0; i < c->l4; i += 2)
        words += be16(p + i);
    c->ident0 = be16(p + 4);
    c->rest = words - be16(p + 2) - be16(p + 4) - be16(p + 10);
}

/* segment.py_split_tcp on a packet the caller checked: n > l4 + 20 */
static PyObject *cut(const uint8_t *p, Py_ssize_t n, Py_ssize_t mss, Py_ssize_t l4)
{
    Cut c = {.p = p, .l4 = l4, .head = l4 + (p[l4 + 12] >> 4) * 4, .mss = mss};
    c.payload = n - c.head;
    if (mss <= 0 || c.payload <= 0)
        return list_of(single(p, n, l4, 16));
    Py_ssize_t count = (c.payload + mss - 1) / mss;
    Py_ssize_t smallest = c.payload - (count - 1) * mss;
    if (!cuttable(p, l4, c.head, mss < c.payload ? mss : c.payload, smallest))
        return PyList_New(0);
    Py_ssize_t start;
    unsigned proto;
    c.partial = l4_layout(p, n, &start, &proto) && start == l4 && proto == PROTO_TCP;
    c.v4 = p[0] >> 4 == 4;
    c.seq0 = be32(p + l4 + 4);
    c.tflags = p[l4 + 13];
    c.psum = address_sum(p) + PROTO_TCP;
    if (c.v4)
        cut_ip(&c);
    PyObject *list = PyList_New(count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *seg = segment(&c, i);
        if (seg == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, seg);
    }
    return list;
}

static PyObject *split_frame(const uint8_t *p, Py_ssize_t n)
{
    if (n < VNET_SIZE)
        return PyList_New(0);
    unsigned flags = p[0], kind = p[1] & ~(unsigned)GSO_ECN;
    Py_ssize_t gso_size = p[4] | p[5] << 8, start = p[6] | p[7] << 8, offset = p[8] | p[9] << 8;
    const uint8_t *packet = p + VNET_SIZE;
    Py_ssize_t len = n - VNET_SIZE;
    if (kind == GSO_NONE) {
        if (!(flags & F_NEEDS_CSUM)) {
            PyObject *copy = PyBytes_FromStringAndSize((const char *)packet, len);
            return copy == NULL ? NULL : list_of(pair(copy, 0));
        }
        return list_of(single(packet, len, start, offset));
    }
    if ((kind == GSO_TCPV4 || kind == GSO_TCPV6) && len > start + 20)
        return cut(packet, len, gso_size, start);
    return PyList_New(0);
}

static PyObject *m_split(PyObject *Py_UNUSED(module), PyObject *frame)
{
    Py_buffer b;
    if (PyObject_GetBuffer(frame, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = split_frame(b.buf, b.len);
    PyBuffer_Release(&b);
    return out;
}

static PyObject *m_split_tcp(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer b;
    Py_ssize_t mss, l4;
    if (!PyArg_ParseTuple(args, "y*nn:split_tcp", &b, &mss, &l4))
        return NULL;
    PyObject *out = NULL;
    if (mss < 0 || mss > 0xFFFF || l4 < 0 || l4 > 0xFFFF || b.len <= l4 + 20)
        PyErr_SetString(PyExc_ValueError, "split_tcp: mss and l4 are 0-65535 and the packet is longer than l4 + 20");
    else
        out = cut(b.buf, b.len, mss, l4);
    PyBuffer_Release(&b);
    return out;
}

/* ---- coalesce.py --------------------------------------------------------------------- */

typedef struct {
    PyObject *obj; /* a strong reference to a bytes object */
    const uint8_t *p;
    Py_ssize_t n;
    unsigned long flags;
} Item;

typedef struct {
    const Item *first;
    Py_ssize_t parts; /* the items right after `first` that the run took */
    Py_ssize_t l4, head, size, total, floor, lo, hi;
    uint32_t next_seq;
    unsigned lead, doff, last_flags;
    int open;
} Run;

static void run_start(Run *r, const Item *first, Py_ssize_t l4)
{
    const uint8_t *p = first->p;
    r->first = first;
    r->parts = 0;
    r->l4 = l4;
    r->lead = p[0];
    r->doff = p[l4 + 12];
    r->head = l4 + (r->doff >> 4) * 4;
    r->size = first->n - r->head;
    r->total = first->n;
    r->floor = r->head > l4 + 13 ? r->head : l4 + 13;
    r->next_seq = be32(p + l4 + 4) + (uint32_t)r->size;
    r->last_flags = p[l4 + 13];
    r->open = r->size > 0 && !(r->last_flags & (ENDS | REFUSED));
    r->lo = r->lead >> 4 == 4 ? 12 : 8;
    r->hi = l4 + 4;
}

/* Run.take */
static int run_take(Run *r, const Item *it)
{
    const uint8_t *p = it->p;
    Py_ssize_t size = it->n - r->head;
    if (!r->open || it->n <= r->floor || size > r->size || r->total + size > MAX_TOTAL || p[0] != r->lead)
        return 0;
    if (r->hi > r->lo && memcmp(p + r->lo, r->first->p + r->lo, r->hi - r->lo) != 0)
        return 0;
    const uint8_t *t = p + r->l4 + 4;
    uint32_t seq = be32(t);
    unsigned flags = t[9];
    if (t[8] != r->doff || flags & REFUSED || seq != r->next_seq)
        return 0;
    r->parts++;
    r->total += size;
    r->next_seq = seq + (uint32_t)size;
    r->last_flags = flags;
    r->open = size == r->size && !(flags & ENDS);
    return 1;
}

/* vnet.HEADER.pack into h */
static void vnet_fill(uint8_t *h, unsigned flags, unsigned gso_type, Py_ssize_t hdr_len, Py_ssize_t gso_size,
                      Py_ssize_t csum_start, Py_ssize_t csum_offset)
{
    h[0] = (uint8_t)flags;
    h[1] = (uint8_t)gso_type;
    put16le(h + 2, (unsigned)hdr_len);
    put16le(h + 4, (unsigned)gso_size);
    put16le(h + 6, (unsigned)csum_start);
    put16le(h + 8, (unsigned)csum_offset);
    put16le(h + 10, 0);
}

/* vnet.partial */
static PyObject *vnet_partial(Py_ssize_t csum_start, Py_ssize_t csum_offset)
{
    uint8_t h[VNET_SIZE];
    vnet_fill(h, F_NEEDS_CSUM, GSO_NONE, 0, 0, csum_start, csum_offset);
    return PyBytes_FromStringAndSize((const char *)h, VNET_SIZE);
}

/* [header, packet]: a write of one packet as it came */
static PyObject *write_one(PyObject *header, PyObject *packet)
{
    if (header == NULL)
        return NULL;
    PyObject *list = PyList_New(2);
    if (list == NULL) {
        Py_DECREF(header);
        return NULL;
    }
    Py_INCREF(packet);
    PyList_SET_ITEM(list, 0, header);
    PyList_SET_ITEM(list, 1, packet);
    return list;
}

/* Run.write's IP header at o; its length */
static Py_ssize_t joined_ip(const Run *r, uint8_t *o)
{
    const uint8_t *p = r->first->p;
    Py_ssize_t l4 = r->l4;
    if (p[0] >> 4 != 4) {
        memcpy(o, p, 4);
        put16(o + 4, (unsigned)(r->total - 40));
        memcpy(o + 6, p + 6, l4 - 6);
        return l4;
    }
    Py_ssize_t len = l4 > 12 ? l4 : 12;
    memcpy(o, p, 10);
    put16(o + 2, (unsigned)r->total);
    memset(o + 10, 0, 2);
    memcpy(o + 12, p + 12, len - 12);
    uint64_t s = 0;
    for (Py_ssize_t i = 0; i < len; i += 2)
        s += be16(o + i);
    put16(o + 10, ~(unsigned)fold(s) & 0xFFFF);
    return len;
}

/* Run.write's TCP header at o; its length */
static Py_ssize_t joined_tcp(const Run *r, uint8_t *o)
{
    const uint8_t *p = r->first->p;
    Py_ssize_t l4 = r->l4, options = r->head - l4 - 18 > 0 ? r->head - l4 - 18 : 0;
    memcpy(o, p + l4, 16);
    o[13] = (uint8_t)(p[l4 + 13] | (r->last_flags & ENDS));
    put16(o + 16, (unsigned)fold(address_sum(p) + PROTO_TCP + (uint64_t)(r->total - l4)));
    memcpy(o + 18, p + l4 + 18, options);
    return 18 + options;
}

/* Run.write: one contiguous super-packet with its GSO header */
static PyObject *run_write(const Run *r)
{
    const Item *first = r->first;
    Py_ssize_t l4 = r->l4, head = r->head;
    if (r->parts == 0)
        return write_one(vnet_partial(l4, 16), first->obj);
    Py_ssize_t ip_len = first->p[0] >> 4 == 4 ? (l4 > 12 ? l4 : 12) : l4;
    Py_ssize_t tcp_len = 18 + (head - l4 - 18 > 0 ? head - l4 - 18 : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, VNET_SIZE + ip_len + tcp_len + r->total - head);
    if (out == NULL)
        return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    vnet_fill(o, F_NEEDS_CSUM, first->p[0] >> 4 == 4 ? GSO_TCPV4 : GSO_TCPV6, head, r->size, l4, 16);
    o += VNET_SIZE;
    o += joined_ip(r, o);
    o += joined_tcp(r, o);
    for (const Item *it = first; it <= first + r->parts; it++) {
        memcpy(o, it->p + head, it->n - head);
        o += it->n - head;
    }
    return list_of(out);
}

static int append(PyObject *writes, PyObject *write)
{
    if (write == NULL)
        return -1;
    int failed = PyList_Append(writes, write);
    Py_DECREF(write);
    return failed;
}

/* coalesce.plan over the snapshot */
static PyObject *plan_items(const Item *items, Py_ssize_t count)
{
    PyObject *writes = PyList_New(0);
    Run run;
    int running = 0;
    if (writes == NULL)
        return NULL;
    for (const Item *it = items; it < items + count; it++) {
        if (running) {
            if (it->flags & FL_CONTINUES && it->flags & FL_CSUM_PARTIAL && run_take(&run, it))
                continue;
            running = 0;
            if (append(writes, run_write(&run)) < 0)
                goto fail;
        }
        Py_ssize_t l4;
        unsigned proto;
        if (!(it->flags & FL_CSUM_PARTIAL)) {
            Py_INCREF(PLAIN);
            if (append(writes, write_one(PLAIN, it->obj)) < 0)
                goto fail;
        } else if (!l4_layout(it->p, it->n, &l4, &proto)) {
            continue; /* cannot happen: the core completes or drops such packets */
        } else if (proto == PROTO_TCP) {
            run_start(&run, it, l4);
            running = 1;
        } else if (append(writes, write_one(vnet_partial(l4, 6), it->obj)) < 0) {
            goto fail;
        }
    }
    if (running && append(writes, run_write(&run)) < 0)
        goto fail;
    return writes;
fail:
    Py_DECREF(writes);
    return NULL;
}

/* the packet (a strong reference, as bytes) and the flags of one pair held by `pair` */
static int take_pair(PyObject *pair, Item *it)
{
    PyObject *packet = PyTuple_GET_ITEM(pair, 0), *flags = PyTuple_GET_ITEM(pair, 1);
    if (!PyLong_Check(flags)) {
        PyErr_SetString(PyExc_TypeError, "plan: flags must be an int");
        return -1;
    }
    it->flags = PyLong_AsUnsignedLongMask(flags);
    if (it->flags == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (PyBytes_Check(packet)) {
        it->obj = Py_NewRef(packet);
    } else if (PyObject_CheckBuffer(packet)) {
        it->obj = PyBytes_FromObject(packet);
        if (it->obj == NULL)
            return -1;
    } else {
        PyErr_SetString(PyExc_TypeError, "plan: a packet must be bytes");
        return -1;
    }
    it->p = (const uint8_t *)PyBytes_AS_STRING(it->obj);
    it->n = PyBytes_GET_SIZE(it->obj);
    return 0;
}

/* one (packet, flags) pair, a tuple or any pair Python unpacks; -1 with an exception */
static int snapshot_item(PyObject *item, Item *it)
{
    PyObject *pair = PyTuple_CheckExact(item) ? Py_NewRef(item) : PySequence_Tuple(item);
    if (pair == NULL)
        return -1;
    int failed = -1;
    if (PyTuple_GET_SIZE(pair) != 2)
        PyErr_SetString(PyExc_TypeError, "plan: each item is a (packet, flags) pair");
    else
        failed = take_pair(pair, it);
    Py_DECREF(pair);
    return failed;
}

static PyObject *m_plan(PyObject *Py_UNUSED(module), PyObject *arg)
{
    PyObject *pairs = PySequence_Tuple(arg); /* immutable from here on (Rule 3) */
    if (pairs == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(pairs), taken = 0;
    Item *items = PyMem_Calloc(count ? count : 1, sizeof(Item));
    PyObject *out = NULL;
    if (items == NULL) {
        PyErr_NoMemory();
    } else {
        while (taken < count && snapshot_item(PyTuple_GET_ITEM(pairs, taken), items + taken) == 0)
            taken++;
        if (taken == count)
            out = plan_items(items, count);
        for (Py_ssize_t i = 0; i < taken; i++)
            Py_DECREF(items[i].obj);
        PyMem_Free(items);
    }
    Py_DECREF(pairs);
    return out;
}

/* ---- the module ---------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"split", m_split, METH_O, "segment.py_split: the (packet, flags) pairs of one TUN read (vnet header + packet)."},
    {"split_tcp", m_split_tcp, METH_VARARGS, "segment.py_split_tcp(packet, mss, l4): a TCP super-packet cut."},
    {"plan", m_plan, METH_O, "coalesce.py_plan: the TUN writes for received (packet, flags) pairs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_fastseg", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastseg(void)
{
    if (PLAIN == NULL) {
        PLAIN = PyBytes_FromStringAndSize(NULL, VNET_SIZE);
        if (PLAIN == NULL)
            return NULL;
        memset(PyBytes_AS_STRING(PLAIN), 0, VNET_SIZE);
    }
    return PyModule_Create(&module);
}
