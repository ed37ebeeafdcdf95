/* Path: one wakeup of the data path in C, the Python core's happy path (runtime/fastpath.py
 * is the glue; runtime/iobase.py + the cores are the reference it is tested against).
 *
 * This file is part of fastseal.c's translation unit (#included at its end): it uses the
 * Aead and ReplayWindow internals directly.
 *
 * Rule 1: the Python core owns every decision; a Path holds a copy of what the happy path of
 *         each session needs (set by `set`, dropped by `remove`): the sealing Aead (whose
 *         `counter` is the epoch's counter, shared with Python), the open epochs' Aead and
 *         window (the same objects Python uses), the endpoint and the inner addresses.
 * Rule 2: a datagram off the happy path goes to the core unchanged, and so does every
 *         datagram after it in the wakeup, in arrival order and a read per slow_udp call (the
 *         core may have moved what the copies say: an endpoint, an epoch): short, unknown
 *         session or epoch, another type, a new endpoint, a first FL_TAKES_PARTIAL, a replay
 *         or a forgery, or an inner packet whose source is not the session's or whose
 *         destination is another client (the window moves only for a datagram the Path
 *         keeps). slow_udp(addr, datagrams) returns the core's TUN items, which join the
 *         Path's in one plan, as the core's own wakeup writes them. A TUN read with no
 *         sealing session, no endpoint, a partial checksum the peer does not take, or a
 *         counter within reach of the rekey or reject limit goes to slow_tun. `settle` runs
 *         once after a wakeup in which any of them ran (outputs, then `set`s).
 * Rule 3: what a Path does on the happy path is byte for byte what the core does: the same
 *         datagrams (Aead seal under the shared counter), the same TUN writes (`plan`), the
 *         same GSO runs (gso.group_runs) and the same counters, which `drain` hands over.
 * Rule 4: I/O is that of iobase: at most BATCH reads per wakeup, MAX_DATAGRAMS datagrams or
 *         MAX_DRAIN_BYTES bytes from the socket; send errors are counted in `errors`, as
 *         Outputs counts them; after writing to the TUN the TUN is read in the same wakeup.
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define P_BATCH 64
#define P_MAX_DATAGRAMS 256
#define P_MAX_DRAIN (512 << 10)
#define P_GSO_SEGMENTS 64
#define P_GSO_BYTES 65000
#define P_TUN_READ 65547
#define P_SOL_UDP 17
#define P_UDP_SEGMENT 103
#define P_UDP_GRO 104
#define FL_CSUM_PARTIAL 0x01
#define MAX_OPENS 3
#define MAX_ADDRS 2

typedef struct {
    int tag;
    Aead *aead;
    Window *window;
} Open;

typedef struct {
    PyObject_HEAD
    uint32_t sid;
    Aead *seal; /* NULL: every TUN read for the session goes to slow_tun */
    int seal_tag, own, peer_partial;
    uint64_t seal_limit;
    int nopens;
    Open opens[MAX_OPENS];
    int has_endpoint;
    struct sockaddr_storage ep;
    socklen_t ep_len;
    int naddrs;
    int addr_len[MAX_ADDRS];
    unsigned char addr[MAX_ADDRS][16];
    PyObject *addr_keys; /* tuple of the bytes keys in Path.by_addr */
    unsigned long long rx_bytes, rx_packets, tx_bytes, tx_packets;
    double last_rx, last_tx;
    int active; /* something to drain */
} Entry;

static void entry_clear_keys(Entry *e) {
    Py_CLEAR(e->seal);
    for (int i = 0; i < e->nopens; i++) {
        Py_CLEAR(e->opens[i].aead);
        Py_CLEAR(e->opens[i].window);
    }
    e->nopens = 0;
}

static void Entry_dealloc(Entry *self) {
    entry_clear_keys(self);
    Py_CLEAR(self->addr_keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime._fastseal.PathEntry",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One session as a Path sees it (internal).",
    .tp_dealloc = (destructor)Entry_dealloc,
};

typedef struct {
    PyObject_HEAD
    int udp, tun, client, gso, gro;
    PyObject *split, *plan, *slow_udp, *slow_tun, *settle;
    PyObject *by_sid;  /* int -> Entry */
    PyObject *by_addr; /* bytes -> Entry */
    PyObject *errors;  /* str -> int, as Outputs.errors */
    Entry *last;       /* the entry the last lookup found (borrowed; cleared on remove) */
    unsigned char *buf;
    int slowed; /* a slow callable ran in this wakeup */
} Path;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int count_error(Path *p, const char *what, int err, Py_ssize_t n) {
    PyObject *key = err ? PyUnicode_FromFormat("%s-%d", what, err) : PyUnicode_FromString(what);
    if (key == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(p->errors, key);
    long long value = old != NULL ? PyLong_AsLongLong(old) : 0;
    PyObject *sum = PyLong_FromLongLong(value + n);
    int rc = sum != NULL ? PyDict_SetItem(p->errors, key, sum) : -1;
    Py_XDECREF(sum);
    Py_DECREF(key);
    return rc;
}

/* ---- addresses ------------------------------------------------------------------------ */

/* A Python (host, port[, flowinfo, scope_id]) address as a sockaddr; -1 with an exception. */
static int sockaddr_of(PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope = 0;
    if (!PyTuple_Check(addr) || !PyArg_ParseTuple(addr, "si|II", &host, &port, &flowinfo, &scope)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "an address is a (host, port) tuple");
        return -1;
    }
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)port), *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)port);
        v6->sin6_flowinfo = htonl(flowinfo), v6->sin6_scope_id = scope, *len = sizeof *v6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
    return -1;
}

/* The address as socket.recvfrom gives it. */
static PyObject *address_tuple(const struct sockaddr_storage *sa) {
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo), v6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static int same_endpoint(const Entry *e, const struct sockaddr_storage *sa) {
    if (!e->has_endpoint || e->ep.ss_family != sa->ss_family)
        return 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&e->ep, *b = (const struct sockaddr_in *)sa;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&e->ep, *b = (const struct sockaddr_in6 *)sa;
    return a->sin6_port == b->sin6_port && a->sin6_flowinfo == b->sin6_flowinfo
           && a->sin6_scope_id == b->sin6_scope_id && memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0;
}

/* ---- sessions (Rule 1) ---------------------------------------------------------------- */

static Entry *entry_for(Path *p, uint32_t sid) {
    if (p->last != NULL && p->last->sid == sid)
        return p->last;
    PyObject *key = PyLong_FromUnsignedLong(sid);
    if (key == NULL)
        return NULL;
    Entry *e = (Entry *)PyDict_GetItemWithError(p->by_sid, key);
    Py_DECREF(key);
    if (e != NULL)
        p->last = e;
    return e;
}

/* The entry whose inner address `a` (n bytes) is, or NULL (also on error: then PyErr_Occurred). */
static Entry *entry_at(Path *p, const unsigned char *a, int n) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)a, n);
    if (key == NULL)
        return NULL;
    Entry *e = (Entry *)PyDict_GetItemWithError(p->by_addr, key);
    Py_DECREF(key);
    return e;
}

static void drop_addr_keys(Path *p, Entry *e) {
    if (e->addr_keys == NULL)
        return;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(e->addr_keys); i++) {
        PyObject *key = PyTuple_GET_ITEM(e->addr_keys, i);
        if (PyDict_GetItemWithError(p->by_addr, key) == (PyObject *)e)
            PyDict_DelItem(p->by_addr, key);
    }
    PyErr_Clear();
    Py_CLEAR(e->addr_keys);
    e->naddrs = 0;
}

static PyObject *Path_set(Path *p, PyObject *args, PyObject *kwds) {
    static char *names[] = {"sid", "seal", "seal_tag", "seal_limit", "own_flags", "peer_partial", "opens",
                            "endpoint", "addresses", NULL};
    unsigned long sid;
    unsigned long long limit;
    PyObject *seal, *opens, *endpoint, *addresses;
    int tag, own, partial;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "kOiKipO!OO!:set", names, &sid, &seal, &tag, &limit, &own,
                                     &partial, &PyTuple_Type, &opens, &endpoint, &PyTuple_Type, &addresses))
        return NULL;
    if (seal != Py_None && !PyObject_TypeCheck(seal, &AeadType))
        return PyErr_Format(PyExc_TypeError, "set: seal is an Aead or None");
    if (PyTuple_GET_SIZE(opens) > MAX_OPENS || PyTuple_GET_SIZE(addresses) > MAX_ADDRS)
        return PyErr_Format(PyExc_ValueError, "set: at most %d opens and %d addresses", MAX_OPENS, MAX_ADDRS);
    Open parsed[MAX_OPENS];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(opens); i++) {
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(opens, i), "iO!O!:set opens", &parsed[i].tag, &AeadType,
                              &parsed[i].aead, &WindowType, &parsed[i].window))
            return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(addresses); i++) {
        PyObject *a = PyTuple_GET_ITEM(addresses, i);
        if (!PyBytes_Check(a) || (PyBytes_GET_SIZE(a) != 4 && PyBytes_GET_SIZE(a) != 16))
            return PyErr_Format(PyExc_ValueError, "set: an address is 4 or 16 packed bytes");
    }
    struct sockaddr_storage ep;
    socklen_t ep_len = 0;
    if (endpoint != Py_None && sockaddr_of(endpoint, &ep, &ep_len) < 0)
        return NULL;
    PyObject *key = PyLong_FromUnsignedLong(sid);
    if (key == NULL)
        return NULL;
    Entry *e = (Entry *)PyDict_GetItemWithError(p->by_sid, key);
    if (e == NULL) {
        if (PyErr_Occurred() || (e = PyObject_New(Entry, &EntryType)) == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        memset((char *)e + sizeof(PyObject), 0, sizeof(Entry) - sizeof(PyObject));
        e->sid = (uint32_t)sid;
        int rc = PyDict_SetItem(p->by_sid, key, (PyObject *)e);
        Py_DECREF(e); /* the dict holds it */
        if (rc < 0) {
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    entry_clear_keys(e);
    drop_addr_keys(p, e);
    e->seal = seal != Py_None ? (Aead *)Py_NewRef(seal) : NULL;
    e->seal_tag = tag & 0xFF, e->own = own & 0xFF, e->peer_partial = partial, e->seal_limit = limit;
    e->nopens = (int)PyTuple_GET_SIZE(opens);
    for (int i = 0; i < e->nopens; i++) {
        e->opens[i].tag = parsed[i].tag & 0xFF;
        e->opens[i].aead = (Aead *)Py_NewRef(parsed[i].aead);
        e->opens[i].window = (Window *)Py_NewRef(parsed[i].window);
    }
    e->has_endpoint = endpoint != Py_None;
    if (e->has_endpoint)
        e->ep = ep, e->ep_len = ep_len;
    e->naddrs = (int)PyTuple_GET_SIZE(addresses);
    for (int i = 0; i < e->naddrs; i++) {
        PyObject *a = PyTuple_GET_ITEM(addresses, i);
        e->addr_len[i] = (int)PyBytes_GET_SIZE(a);
        memcpy(e->addr[i], PyBytes_AS_STRING(a), e->addr_len[i]);
        if (PyDict_SetItem(p->by_addr, a, (PyObject *)e) < 0)
            return NULL;
    }
    e->addr_keys = Py_NewRef(addresses);
    Py_RETURN_NONE;
}

static PyObject *Path_remove(Path *p, PyObject *arg) {
    unsigned long sid = PyLong_AsUnsignedLong(arg);
    if (sid == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    Entry *e = (Entry *)PyDict_GetItemWithError(p->by_sid, arg);
    if (e == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (p->last == e)
        p->last = NULL;
    drop_addr_keys(p, e);
    entry_clear_keys(e);
    if (PyDict_DelItem(p->by_sid, arg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Path_drain(Path *p, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0), *key, *value;
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(p->by_sid, &pos, &key, &value)) {
        Entry *e = (Entry *)value;
        if (!e->active)
            continue;
        PyObject *row = Py_BuildValue("(kKKKKdd)", (unsigned long)e->sid, e->rx_bytes, e->rx_packets, e->tx_bytes,
                                      e->tx_packets, e->last_rx, e->last_tx);
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
        e->rx_bytes = e->rx_packets = e->tx_bytes = e->tx_packets = 0;
        e->last_rx = e->last_tx = 0.0;
        e->active = 0;
    }
    return out;
}

/* ---- sending (Rule 3: gso.group_runs and gso.Sender) ---------------------------------- */

typedef struct {
    PyObject *datagrams; /* list of bytes (a reference) */
    int has_addr;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} Group;

typedef struct {
    Group items[P_BATCH];
    int n;
    Py_ssize_t count;
} Groups;

static void groups_clear(Groups *g) {
    for (int i = 0; i < g->n; i++)
        Py_CLEAR(g->items[i].datagrams);
    g->n = 0, g->count = 0;
}

static int refused(int err) { return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP; }

static int send_one(Path *p, const Group *g, PyObject *d) {
    ssize_t rc = sendto(p->udp, PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d), 0,
                        g->has_addr ? (const struct sockaddr *)&g->addr : NULL, g->has_addr ? g->addr_len : 0);
    return rc < 0 ? count_error(p, "udp-send", errno, 1) : 0;
}

/* items[0:n] to g's address as one GSO run (gso.Sender._send_run), or one by one. */
static int send_run(Path *p, const Group *g, PyObject *const *items, Py_ssize_t n) {
    if (n > 1 && p->gso) {
        struct iovec iov[P_GSO_SEGMENTS];
        union {
            char buf[CMSG_SPACE(sizeof(uint16_t))];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof control);
        for (Py_ssize_t i = 0; i < n; i++)
            iov[i].iov_base = PyBytes_AS_STRING(items[i]), iov[i].iov_len = PyBytes_GET_SIZE(items[i]);
        struct msghdr msg = {0};
        msg.msg_name = g->has_addr ? (void *)&g->addr : NULL;
        msg.msg_namelen = g->has_addr ? g->addr_len : 0;
        msg.msg_iov = iov, msg.msg_iovlen = n;
        msg.msg_control = control.buf, msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = P_SOL_UDP, cm->cmsg_type = P_UDP_SEGMENT, cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)iov[0].iov_len;
        memcpy(CMSG_DATA(cm), &size, sizeof size);
        if (sendmsg(p->udp, &msg, 0) >= 0)
            return 0;
        int err = errno;
        if (!refused(err))
            return count_error(p, "udp-send", err, n);
        p->gso = 0;
        if (count_error(p, "udp-gso-off", 0, 1) < 0)
            return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (send_one(p, g, items[i]) < 0)
            return -1;
    return 0;
}

static int same_group_addr(const Group *a, const Group *b) {
    if (a->has_addr != b->has_addr)
        return 0;
    return !a->has_addr || (a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0);
}

/* gso.group_runs over the groups, each run sent as it closes; a run of single datagrams
 * may span groups to the same address, as there. */
static int send_groups(Path *p, Groups *gs) {
    PyObject *run[P_GSO_SEGMENTS]; /* borrowed: the groups hold them */
    const Group *to = NULL;
    Py_ssize_t n = 0, size = 0, total = 0;
    int rc = 0;
    for (int k = 0; k < gs->n && rc == 0; k++) {
        const Group *g = &gs->items[k];
        PyObject *const *items = ((PyListObject *)g->datagrams)->ob_item;
        Py_ssize_t count = PyList_GET_SIZE(g->datagrams);
        if (count > 1) {
            Py_ssize_t first = PyBytes_GET_SIZE(items[0]), i = 1;
            while (i < count - 1 && PyBytes_GET_SIZE(items[i]) == first)
                i++;
            if (i == count - 1 && PyBytes_GET_SIZE(items[count - 1]) <= first) { /* shaped like runs */
                if (n > 0)
                    rc = send_run(p, to, run, n), n = 0;
                Py_ssize_t step = P_GSO_BYTES / (first > 0 ? first : 1);
                step = step < 1 ? 1 : step > P_GSO_SEGMENTS ? P_GSO_SEGMENTS : step;
                for (Py_ssize_t s = 0; s < count && rc == 0; s += step)
                    rc = send_run(p, g, items + s, s + step < count ? step : count - s);
                continue;
            }
        }
        for (Py_ssize_t i = 0; i < count && rc == 0; i++) {
            Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
            if (n > 0 && (!same_group_addr(to, g) || len > size || n == P_GSO_SEGMENTS || total + len > P_GSO_BYTES
                          || PyBytes_GET_SIZE(run[n - 1]) < size))
                rc = send_run(p, to, run, n), n = 0;
            if (n == 0)
                to = g, size = len, total = 0;
            run[n++] = items[i];
            total += len;
        }
    }
    if (rc == 0 && n > 0)
        rc = send_run(p, to, run, n);
    groups_clear(gs);
    return rc;
}

/* Queue one group (its datagrams a list of bytes); the groups go out at 64 datagrams. */
static int push_group(Path *p, Groups *gs, PyObject *datagrams, const struct sockaddr_storage *addr,
                      socklen_t addr_len) {
    Group *g = &gs->items[gs->n];
    g->has_addr = addr != NULL;
    if (addr != NULL)
        g->addr = *addr, g->addr_len = addr_len;
    g->datagrams = Py_NewRef(datagrams);
    gs->n++;
    gs->count += PyList_GET_SIZE(datagrams);
    if (gs->n == P_BATCH || gs->count >= P_GSO_SEGMENTS)
        return send_groups(p, gs);
    return 0;
}

/* A group slow_tun returned: (address or None, datagrams). */
static int add_slow_group(Path *p, Groups *gs, PyObject *group) {
    PyObject *addr, *datagrams;
    if (!PyTuple_Check(group) || !PyArg_ParseTuple(group, "OO!", &addr, &PyList_Type, &datagrams)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "slow_tun gives (address, datagrams) or None");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(datagrams); i++)
        if (!PyBytes_Check(PyList_GET_ITEM(datagrams, i)))
            return PyErr_SetString(PyExc_TypeError, "slow_tun: datagrams are bytes"), -1;
    if (PyList_GET_SIZE(datagrams) == 0)
        return 0;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    if (addr != Py_None && sockaddr_of(addr, &sa, &len) < 0)
        return -1;
    return push_group(p, gs, datagrams, addr != Py_None ? &sa : NULL, len);
}

/* ---- the TUN side (Outputs.seal_tun_reads) -------------------------------------------- */

/* The segments' sealing entry on the happy path, or NULL (slow). */
static Entry *sealer(Path *p, PyObject *segments) {
    Py_ssize_t n = PyList_GET_SIZE(segments);
    Entry *e = NULL;
    if (p->client) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        if (PyDict_Size(p->by_sid) == 1 && PyDict_Next(p->by_sid, &pos, &key, &value))
            e = (Entry *)value;
    } else {
        PyObject *first = PyTuple_GET_ITEM(PyList_GET_ITEM(segments, 0), 0);
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(first);
        Py_ssize_t len = PyBytes_GET_SIZE(first);
        int version = len > 0 ? d[0] >> 4 : 0;
        if (version == 4 && len >= 20)
            e = entry_at(p, d + 16, 4);
        else if (version == 6 && len >= 40)
            e = entry_at(p, d + 24, 16);
        if (e == NULL || !e->has_endpoint)
            return NULL;
    }
    if (e == NULL || e->seal == NULL || e->seal->counter + (uint64_t)n >= e->seal_limit
        || e->seal->counter + (uint64_t)n < e->seal->counter)
        return NULL;
    if (!e->peer_partial)
        for (Py_ssize_t i = 0; i < n; i++)
            if (PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(segments, i), 1)) & FL_CSUM_PARTIAL)
                return NULL;
    return e;
}

static int segments_ok(PyObject *segments) {
    if (!PyList_Check(segments))
        return 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(segments); i++) {
        PyObject *s = PyList_GET_ITEM(segments, i);
        if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(s, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(s, 1)))
            return 0;
    }
    return 1;
}

static int seal_read(Path *p, Groups *gs, PyObject *segments, double now) {
    Entry *e = sealer(p, segments);
    if (e == NULL && PyErr_Occurred())
        return -1;
    if (e == NULL) {
        p->slowed = 1;
        PyObject *group = PyObject_CallOneArg(p->slow_tun, segments);
        if (group == NULL)
            return -1;
        int rc = group == Py_None ? 0 : add_slow_group(p, gs, group);
        Py_DECREF(group);
        return rc;
    }
    Header h = {DG_DATA, (unsigned char)e->seal_tag, (unsigned char)e->own, e->sid, e->seal->counter, 0};
    Aead *seal = (Aead *)Py_NewRef(e->seal);
    PyObject *datagrams = seal_all(seal, segments, &h);
    Py_DECREF(seal);
    if (datagrams == NULL)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(datagrams), bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        bytes += PyBytes_GET_SIZE(PyList_GET_ITEM(datagrams, i)) - MIN_DATAGRAM;
    e->seal->counter += (uint64_t)n;
    e->tx_bytes += (unsigned long long)bytes, e->tx_packets += (unsigned long long)n;
    e->last_tx = now, e->active = 1;
    int rc = push_group(p, gs, datagrams, p->client ? NULL : &e->ep, e->ep_len);
    Py_DECREF(datagrams);
    return rc;
}

static int settle(Path *p) {
    if (!p->slowed)
        return 0;
    p->slowed = 0;
    PyObject *r = PyObject_CallNoArgs(p->settle);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *Path_on_tun(Path *p, PyObject *Py_UNUSED(ignored)) {
    Groups gs = {.n = 0, .count = 0};
    double now = now_mono();
    int rc = 0;
    for (int i = 0; i < P_BATCH && rc == 0; i++) {
        ssize_t n = read(p->tun, p->buf, P_TUN_READ);
        if (n < 0)
            break;
        PyObject *frame = PyBytes_FromStringAndSize((const char *)p->buf, n);
        PyObject *segments = frame != NULL ? PyObject_CallOneArg(p->split, frame) : NULL;
        Py_XDECREF(frame);
        if (segments == NULL)
            rc = -1;
        else if (!segments_ok(segments))
            rc = -1, PyErr_SetString(PyExc_TypeError, "split gives a list of (bytes, int)");
        else if (PyList_GET_SIZE(segments) > 0)
            rc = seal_read(p, &gs, segments, now);
        Py_XDECREF(segments);
    }
    if (rc == 0)
        rc = send_groups(p, &gs);
    groups_clear(&gs);
    if (rc < 0 || settle(p) < 0) /* after an error its exception goes up; the next wakeup settles */
        return NULL;
    Py_RETURN_NONE;
}

/* ---- the UDP side (Receiver.receive, core.open_datagrams, Outputs.write_tun_many) ---- */

typedef struct {
    PyObject *items;   /* (packet, flags) for the TUN, in order */
    PyObject *slow;    /* [(addr, [datagram, ...]), ...] for slow_udp, a read each */
    PyObject *run;     /* the slow list of this read, or NULL */
    int core;          /* the rest of the wakeup is the core's (Rule 2) */
} Received;

static int slow_datagram(Received *r, const struct sockaddr_storage *src, PyObject **src_obj,
                         const unsigned char *d, Py_ssize_t len) {
    if (r->run == NULL) {
        if (*src_obj == NULL && (*src_obj = address_tuple(src)) == NULL)
            return -1;
        PyObject *list = PyList_New(0);
        PyObject *pair = list != NULL ? PyTuple_Pack(2, *src_obj, list) : NULL;
        int rc = pair != NULL ? PyList_Append(r->slow, pair) : -1;
        Py_XDECREF(pair);
        if (rc < 0) {
            Py_XDECREF(list);
            return -1;
        }
        r->run = list; /* borrowed from the pair in r->slow */
        Py_DECREF(list);
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, len);
    int rc = data != NULL ? PyList_Append(r->run, data) : -1;
    Py_XDECREF(data);
    return rc;
}

static int has_addr(const Entry *e, const unsigned char *a, int n) {
    for (int i = 0; i < e->naddrs; i++)
        if (e->addr_len[i] == n && memcmp(e->addr[i], a, n) == 0)
            return 1;
    return 0;
}

/* 1 when the server writes this inner packet of e's to the TUN itself (core.deliver_many's
 * verdict "TUN"), 0 when the core must judge it, -1 on error. */
static int own_packet(Path *p, const Entry *e, const unsigned char *d, Py_ssize_t len) {
    int version = len > 0 ? d[0] >> 4 : 0, n;
    const unsigned char *src, *dst;
    if (version == 4 && len >= 20)
        src = d + 12, dst = d + 16, n = 4;
    else if (version == 6 && len >= 40)
        src = d + 8, dst = d + 24, n = 16;
    else
        return 0;
    if (!has_addr(e, src, n))
        return 0;
    Entry *target = entry_at(p, dst, n);
    if (target == NULL)
        return PyErr_Occurred() ? -1 : 1;
    return 0;
}

/* One datagram: opened on the happy path, else to r->slow with the rest of the wakeup (Rule 2). */
static int take_datagram(Path *p, Received *r, const struct sockaddr_storage *src, PyObject **src_obj,
                         const unsigned char *d, Py_ssize_t len, double now) {
    Entry *e = NULL;
    const Open *o = NULL;
    if (r->core)
        return slow_datagram(r, src, src_obj, d, len);
    if (len >= MIN_DATAGRAM && len - HEADER_LEN <= INT_MAX && (d[0] == DG_DATA || d[0] == DG_KEEPALIVE)) {
        e = entry_for(p, (uint32_t)get_be(d + 4, 4));
        if (e == NULL && PyErr_Occurred())
            return -1;
    }
    if (e != NULL && (p->client || same_endpoint(e, src)) && (e->peer_partial || !(d[2] & FL_TAKES_PARTIAL)))
        for (int i = 0; i < e->nopens && o == NULL; i++)
            if (e->opens[i].tag == d[1])
                o = &e->opens[i];
    uint64_t counter = o != NULL ? get_be(d + 8, 8) : 0;
    if (o == NULL || !window_check(o->window, counter))
        return r->core = 1, slow_datagram(r, src, src_obj, d, len);
    PyObject *plain = open_datagram(o->aead, d, len);
    if (plain == NULL)
        return PyErr_Occurred() ? -1 : (r->core = 1, slow_datagram(r, src, src_obj, d, len));
    Py_ssize_t size = PyBytes_GET_SIZE(plain);
    int own = d[0] != DG_DATA || p->client ? 1 : own_packet(p, e, (const unsigned char *)PyBytes_AS_STRING(plain), size);
    if (own <= 0) { /* the core's: it opens the datagram again, the window unmoved */
        Py_DECREF(plain);
        return own < 0 ? -1 : (r->core = 1, slow_datagram(r, src, src_obj, d, len));
    }
    window_update(o->window, counter);
    e->last_rx = now, e->active = 1;
    int rc = 0;
    if (d[0] == DG_DATA) {
        e->rx_bytes += (unsigned long long)size, e->rx_packets++;
        PyObject *bits = PyLong_FromLong(d[2] & FL_INNER);
        PyObject *pair = bits != NULL ? PyTuple_Pack(2, plain, bits) : NULL;
        Py_XDECREF(bits);
        rc = pair != NULL ? PyList_Append(r->items, pair) : -1;
        Py_XDECREF(pair);
    }
    Py_DECREF(plain);
    return rc;
}

static int write_items(Path *p, PyObject *items) {
    if (PyList_GET_SIZE(items) == 0)
        return 0;
    PyObject *writes = PyObject_CallOneArg(p->plan, items);
    if (writes == NULL)
        return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(writes); i++) {
        PyObject *parts = PyList_GET_ITEM(writes, i);
        struct iovec iov[4];
        Py_ssize_t n = PySequence_Size(parts);
        if (n < 0 || n > 4) {
            rc = -1;
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "plan gives writes of at most 4 parts");
            break;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *part = PyList_Check(parts) ? PyList_GET_ITEM(parts, k) : PyTuple_GET_ITEM(parts, k);
            iov[k].iov_base = PyBytes_AS_STRING(part), iov[k].iov_len = PyBytes_GET_SIZE(part);
        }
        if (writev(p->tun, iov, (int)n) < 0)
            rc = count_error(p, "tun-write", errno, 1);
    }
    Py_DECREF(writes);
    return rc;
}

/* slow_udp(addr, datagrams) for each row, in order; the TUN items it returns join `items`. */
static int call_slow(Path *p, PyObject *rows, PyObject *items) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        p->slowed = 1;
        PyObject *got = PyObject_CallFunctionObjArgs(p->slow_udp, PyTuple_GET_ITEM(row, 0), PyTuple_GET_ITEM(row, 1),
                                                     NULL);
        if (got == NULL)
            return -1;
        int rc = 0;
        if (!PyList_Check(got))
            rc = -1, PyErr_SetString(PyExc_TypeError, "slow_udp returns a list of (packet, flags)");
        else
            rc = PyList_SetSlice(items, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, got);
        Py_DECREF(got);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int receive(Path *p, Received *r, double now) {
    Py_ssize_t count = 0, bytes = 0;
    for (int k = 0; k < P_BATCH; k++) {
        struct sockaddr_storage src;
        struct iovec iov = {p->buf, 65535};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        struct msghdr msg = {0};
        msg.msg_name = &src, msg.msg_namelen = sizeof src;
        msg.msg_iov = &iov, msg.msg_iovlen = 1;
        msg.msg_control = control.buf, msg.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(p->udp, &msg, 0);
        if (n < 0)
            break;
        Py_ssize_t size = n;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
            if (cm->cmsg_level == P_SOL_UDP && cm->cmsg_type == P_UDP_GRO && cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int gro;
                memcpy(&gro, CMSG_DATA(cm), sizeof gro);
                size = gro > 0 ? gro : n;
            }
        PyObject *src_obj = NULL;
        r->run = NULL;
        if (n == 0 && (count++, r->core = 1, slow_datagram(r, &src, &src_obj, p->buf, 0) < 0)) {
            Py_XDECREF(src_obj);
            return -1;
        }
        for (Py_ssize_t off = 0; off < n; off += size, count++) {
            Py_ssize_t len = n - off < size ? n - off : size;
            if (take_datagram(p, r, &src, &src_obj, p->buf + off, len, now) < 0) {
                Py_XDECREF(src_obj);
                return -1;
            }
        }
        Py_XDECREF(src_obj);
        bytes += n;
        if (count >= P_MAX_DATAGRAMS || bytes >= P_MAX_DRAIN)
            break;
    }
    return 0;
}

static PyObject *Path_on_udp(Path *p, PyObject *Py_UNUSED(ignored)) {
    Received r = {PyList_New(0), PyList_New(0), NULL, 0};
    int rc = r.items != NULL && r.slow != NULL ? 0 : -1, wrote = 0;
    if (rc == 0)
        rc = receive(p, &r, now_mono());
    if (rc == 0)
        rc = call_slow(p, r.slow, r.items);
    if (rc == 0) {
        wrote = PyList_GET_SIZE(r.items) > 0;
        rc = write_items(p, r.items);
    }
    Py_XDECREF(r.items);
    Py_XDECREF(r.slow);
    if (rc < 0 || settle(p) < 0) /* after an error its exception goes up; the next wakeup settles */
        return NULL;
    if (wrote) /* Rule 4: what the kernel answered at once leaves in this wakeup */
        return Path_on_tun(p, NULL);
    Py_RETURN_NONE;
}

/* ---- the object ----------------------------------------------------------------------- */

static int Path_init(Path *p, PyObject *args, PyObject *kwds) {
    static char *names[] = {"udp", "tun", "client", "split", "plan", "slow_udp", "slow_tun", "settle", NULL};
    int udp, tun, client;
    PyObject *split, *plan, *slow_udp, *slow_tun, *settle_;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iipOOOOO:Path", names, &udp, &tun, &client, &split, &plan,
                                     &slow_udp, &slow_tun, &settle_))
        return -1;
    p->udp = udp, p->tun = tun, p->client = client, p->gso = 1;
    Py_XSETREF(p->split, Py_NewRef(split));
    Py_XSETREF(p->plan, Py_NewRef(plan));
    Py_XSETREF(p->slow_udp, Py_NewRef(slow_udp));
    Py_XSETREF(p->slow_tun, Py_NewRef(slow_tun));
    Py_XSETREF(p->settle, Py_NewRef(settle_));
    return 0;
}

/* The tables and buffer exist from birth, so a Path whose __init__ never ran is inert
 * (fds -1, no callables: a wakeup reads nothing) rather than a crash. */
static PyObject *Path_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args, (void)kwds;
    Path *p = (Path *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->udp = p->tun = -1;
    if ((p->by_sid = PyDict_New()) == NULL || (p->by_addr = PyDict_New()) == NULL
        || (p->errors = PyDict_New()) == NULL || (p->buf = PyMem_Malloc(P_TUN_READ)) == NULL) {
        if (p->buf == NULL && !PyErr_Occurred())
            PyErr_NoMemory();
        Py_DECREF(p);
        return NULL;
    }
    return (PyObject *)p;
}

static int Path_traverse(Path *p, visitproc visit, void *arg) {
    Py_VISIT(p->split);
    Py_VISIT(p->plan);
    Py_VISIT(p->slow_udp);
    Py_VISIT(p->slow_tun);
    Py_VISIT(p->settle);
    Py_VISIT(p->by_sid);
    Py_VISIT(p->by_addr);
    Py_VISIT(p->errors);
    return 0;
}

static int Path_clear(Path *p) {
    p->last = NULL;
    Py_CLEAR(p->split);
    Py_CLEAR(p->plan);
    Py_CLEAR(p->slow_udp);
    Py_CLEAR(p->slow_tun);
    Py_CLEAR(p->settle);
    Py_CLEAR(p->by_addr);
    Py_CLEAR(p->by_sid);
    Py_CLEAR(p->errors);
    return 0;
}

static void Path_dealloc(Path *p) {
    PyObject_GC_UnTrack(p);
    Path_clear(p);
    PyMem_Free(p->buf);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *Path_len(Path *p, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSsize_t(PyDict_Size(p->by_sid));
}

static PyMethodDef Path_methods[] = {
    {"set", (PyCFunction)(void (*)(void))Path_set, METH_VARARGS | METH_KEYWORDS,
     "set(sid, seal, seal_tag, seal_limit, own_flags, peer_partial, opens, endpoint, addresses): add or\n"
     "replace a session's happy-path copy (Rule 1); its undrained counters stay."},
    {"remove", (PyCFunction)Path_remove, METH_O, "remove(sid): forget a session (its counters too)."},
    {"drain", (PyCFunction)Path_drain, METH_NOARGS,
     "drain() -> [(sid, rx_bytes, rx_packets, tx_bytes, tx_packets, last_rx, last_tx)] since the last drain\n"
     "(times 0.0: none), for the sessions with any."},
    {"on_udp", (PyCFunction)Path_on_udp, METH_NOARGS, "The UDP socket is readable: one wakeup (Rules 2-4)."},
    {"on_tun", (PyCFunction)Path_on_tun, METH_NOARGS, "The TUN is readable: one wakeup (Rules 2-4)."},
    {"sessions", (PyCFunction)Path_len, METH_NOARGS, "How many sessions the path holds."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Path_members[] = {
    {"errors", T_OBJECT, offsetof(Path, errors), READONLY, "I/O errors by kind, as Outputs.errors."},
    {"gso", T_INT, offsetof(Path, gso), 0, "UDP GSO sends on (off after a refusal)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime._fastseal.Path",
    .tp_basicsize = sizeof(Path),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Path(udp, tun, client, split, plan, slow_udp, slow_tun, settle): the data\n"
              "path's wakeups in C (runtime/native/fastpath.c).",
    .tp_new = Path_new,
    .tp_init = (initproc)Path_init,
    .tp_dealloc = (destructor)Path_dealloc,
    .tp_traverse = (traverseproc)Path_traverse,
    .tp_clear = (inquiry)Path_clear,
    .tp_methods = Path_methods,
    .tp_members = Path_members,
};
