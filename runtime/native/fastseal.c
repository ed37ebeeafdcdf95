/* _fastseal: the data channel's per-packet loops in C (runtime/proto/datachannel.py is the
 * reference; tests/proto/test_native_seal.py compares the two byte for byte).
 *
 * Rule 1: an Aead holds one EVP_CIPHER_CTX per direction, keyed once when it is made; per
 *         packet only the nonce, the AAD, the data and the 16-byte tag go in. It is a drop-in
 *         for cryptography's AESGCM / ChaCha20Poly1305 (encrypt, decrypt raising
 *         cryptography.exceptions.InvalidTag) with 12-byte nonces only; the key is never kept
 *         outside OpenSSL's contexts, which are freed (and so cleansed) with the object.
 * Rule 2: seal_batch writes exactly what the Python loop writes: header struct "!BBBBIQ"
 *         (kind, epoch tag, flags | own flags, 0, session, counter), then AEAD(nonce = 4 zero
 *         bytes + the counter, payload, AAD = the header); out-of-range header fields raise
 *         struct.error, as struct.pack does.
 * Rule 3: ReplayWindow is runtime/proto/replay.py's window (8192-bit ring, WINDOW = 8128)
 *         on u64 counters and a u64 limit; update refuses 2**64 - 1, which no limit admits.
 * Rule 4: open_run opens datagrams from `start` while each is >= MIN_DATAGRAM bytes, of the
 *         session and of the epoch tag; it counts bad types, replays (checked before the AEAD)
 *         and forgeries (the window moves only after authentication), appends DATA payloads
 *         with flags & FL_INNER, and stops after the first authentic one when asked (the
 *         caller then activates a pending epoch). Everything else is left to the caller.
 * Rule 5: every length is checked before a read; the GIL is held throughout (packets are
 *         small), and items are held by a reference while they are read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <openssl/evp.h>
#include "structmember.h"

#define HEADER_LEN 16
#define TAG_LEN 16
#define NONCE_LEN 12
#define KEY_LEN 32
#define MIN_DATAGRAM (HEADER_LEN + TAG_LEN)
#define DG_DATA 1
#define DG_KEEPALIVE 2
#define FL_TAKES_PARTIAL 0x04
#define FL_INNER 0x03
#define WORD_BITS 64
#define WORDS 128
#define RING (WORDS - 1)
#define WINDOW (WORDS * WORD_BITS - WORD_BITS)
#define MAX_AEAD_INPUT (INT_MAX - TAG_LEN)

static PyObject *InvalidTag;  /* cryptography.exceptions.InvalidTag */
static PyObject *StructError; /* struct.error */

/* ---- replay window (Rule 3) ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uint64_t limit;
    uint64_t top; /* highest accepted counter + 1 (0: none yet) */
    uint64_t words[WORDS];
} Window;

static PyTypeObject WindowType;

static int window_check(const Window *w, uint64_t counter) {
    if (counter >= w->limit)
        return 0;
    uint64_t c = counter + 1; /* no overflow: counter < limit <= 2**64 - 1 */
    if (w->top > WINDOW && c < w->top - WINDOW)
        return 0;
    if (c > w->top)
        return 1;
    return !((w->words[(c >> 6) & RING] >> (c & 63)) & 1);
}

static void window_update(Window *w, uint64_t counter) {
    uint64_t c = counter + 1; /* the caller excludes UINT64_MAX */
    uint64_t index = c >> 6;
    if (c > w->top) {
        uint64_t current = w->top >> 6;
        uint64_t n = index - current < WORDS ? index - current : WORDS;
        for (uint64_t i = 1; i <= n; i++)
            w->words[(current + i) & RING] = 0;
        w->top = c;
    }
    w->words[index & RING] |= (uint64_t)1 << (c & 63);
}

static int as_u64(PyObject *obj, uint64_t *out) {
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL)
        return -1;
    unsigned long long value = PyLong_AsUnsignedLongLong(index);
    Py_DECREF(index);
    if (value == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = value;
    return 0;
}

/* A counter for check/accept: 1 when it fits a u64, 0 when it is an int past 2**64 - 1
 * (which no limit admits), -1 with an exception otherwise (negative, not an int). */
static int counter_arg(PyObject *obj, uint64_t *out) {
    if (as_u64(obj, out) == 0)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_OverflowError) || !PyLong_Check(obj))
        return -1;
    PyErr_Clear();
    PyObject *zero = PyLong_FromLong(0);
    int negative = zero != NULL ? PyObject_RichCompareBool(obj, zero, Py_LT) : -1;
    Py_XDECREF(zero);
    if (negative == 1)
        PyErr_SetString(PyExc_OverflowError, "ReplayWindow: a counter is never negative");
    return negative ? -1 : 0;
}

static PyObject *Window_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"limit", NULL};
    PyObject *limit_obj;
    uint64_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:ReplayWindow", names, &limit_obj))
        return NULL;
    if (as_u64(limit_obj, &limit) < 0)
        return NULL;
    Window *w = (Window *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->limit = limit;
    w->top = 0;
    memset(w->words, 0, sizeof w->words);
    return (PyObject *)w;
}

static PyObject *Window_check(Window *self, PyObject *arg) {
    uint64_t counter;
    int fits = counter_arg(arg, &counter);
    if (fits < 0)
        return NULL;
    return PyBool_FromLong(fits && window_check(self, counter));
}

static PyObject *Window_update(Window *self, PyObject *arg) {
    uint64_t counter;
    if (as_u64(arg, &counter) < 0)
        return NULL;
    if (counter == UINT64_MAX)
        return PyErr_Format(PyExc_OverflowError, "ReplayWindow.update: counter 2**64 - 1 is past every limit");
    window_update(self, counter);
    Py_RETURN_NONE;
}

static PyObject *Window_accept(Window *self, PyObject *arg) {
    uint64_t counter;
    int fits = counter_arg(arg, &counter);
    if (fits < 0)
        return NULL;
    if (!fits || !window_check(self, counter))
        Py_RETURN_FALSE;
    window_update(self, counter);
    Py_RETURN_TRUE;
}

static int Window_traverse(PyObject *self, visitproc visit, void *arg) {
    (void)self, (void)visit, (void)arg;
    return 0;
}

static void Window_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef Window_methods[] = {
    {"check", (PyCFunction)Window_check, METH_O, "True when `counter` may be accepted (read-only)."},
    {"update", (PyCFunction)Window_update, METH_O, "Record `counter` as seen (after authentication)."},
    {"accept", (PyCFunction)Window_accept, METH_O, "check + update in one call."},
    {NULL, NULL, 0, NULL},
};

/* GC-tracked though it holds no references, so gc.get_objects() counts it as it counts the
 * Python window (tests/proto/test_memory_rekey.py). */
static PyTypeObject WindowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime._fastseal.ReplayWindow",
    .tp_basicsize = sizeof(Window),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ReplayWindow(limit): runtime/proto/replay.py's window in C.",
    .tp_new = Window_new,
    .tp_dealloc = Window_dealloc,
    .tp_free = PyObject_GC_Del,
    .tp_traverse = Window_traverse,
    .tp_methods = Window_methods,
};

/* ---- AEAD (Rule 1) -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    uint64_t counter; /* the next counter to seal under this key (Epoch.counter), 0 when made */
} Aead;

static PyTypeObject AeadType;

static PyObject *openssl_error(const char *what) {
    return PyErr_Format(PyExc_RuntimeError, "_fastseal: OpenSSL %s failed", what);
}

static EVP_CIPHER_CTX *keyed_context(const EVP_CIPHER *cipher, const unsigned char *key, int encrypt) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return NULL;
    if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, encrypt) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) != 1
        || EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static const EVP_CIPHER *cipher_named(const char *name) {
    if (strcmp(name, "aes-256-gcm") == 0)
        return EVP_aes_256_gcm();
    if (strcmp(name, "chacha20-poly1305") == 0)
        return EVP_chacha20_poly1305();
    return NULL;
}

static PyObject *Aead_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"cipher", "key", NULL};
    const char *name;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*:Aead", names, &name, &key))
        return NULL;
    const EVP_CIPHER *cipher = cipher_named(name);
    Aead *self = NULL;
    if (cipher == NULL)
        PyErr_Format(PyExc_ValueError, "unknown cipher '%s'", name);
    else if (key.len != KEY_LEN)
        PyErr_Format(PyExc_ValueError, "%s needs a %d-byte key", name, KEY_LEN);
    else if ((self = (Aead *)type->tp_alloc(type, 0)) != NULL) {
        self->enc = keyed_context(cipher, key.buf, 1);
        self->dec = keyed_context(cipher, key.buf, 0);
        if (self->enc == NULL || self->dec == NULL) {
            Py_CLEAR(self);
            openssl_error("key setup");
        }
    }
    PyBuffer_Release(&key);
    return (PyObject *)self;
}

static void Aead_dealloc(Aead *self) {
    EVP_CIPHER_CTX_free(self->enc); /* frees and cleanses the key schedule */
    EVP_CIPHER_CTX_free(self->dec);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* out = ciphertext || tag of `in` (len bytes); 0 on success. */
static int seal_into(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *aad, int aad_len,
                     const unsigned char *in, int len, unsigned char *out) {
    int n;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1)
        return -1;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad, aad_len) != 1)
        return -1;
    if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, len) != 1)
        return -1;
    if (EVP_EncryptFinal_ex(ctx, out + len, &n) != 1)
        return -1;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + len) == 1 ? 0 : -1;
}

/* out = plaintext of `in` (len bytes: ciphertext || tag, len >= TAG_LEN); 1 when authentic. */
static int open_into(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *aad, int aad_len,
                     const unsigned char *in, int len, unsigned char *out) {
    int n, plain = len - TAG_LEN;
    unsigned char none[1];
    if (plain == 0)
        out = none; /* never write into the empty bytes object, which is shared */
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, (void *)(in + plain)) != 1)
        return 0;
    if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &n, aad, aad_len) != 1)
        return 0;
    if (plain > 0 && EVP_DecryptUpdate(ctx, out, &n, in, plain) != 1)
        return 0;
    return EVP_DecryptFinal_ex(ctx, out + plain, &n) == 1;
}

/* nonce, data and associated data (None: empty) as buffers, with cryptography's checks. */
static int aead_args(PyObject *args, PyObject *kwds, Py_buffer *nonce, Py_buffer *data, Py_buffer *aad) {
    static char *names[] = {"nonce", "data", "associated_data", NULL};
    PyObject *aad_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*O", names, nonce, data, &aad_obj))
        return -1;
    aad->obj = NULL;
    aad->buf = NULL;
    aad->len = 0;
    if (nonce->len != NONCE_LEN)
        PyErr_Format(PyExc_ValueError, "Nonce must be %d bytes", NONCE_LEN);
    else if (data->len > MAX_AEAD_INPUT)
        PyErr_SetString(PyExc_OverflowError, "Data or associated data too long. Max 2**31 - 1 bytes");
    else if (aad_obj == Py_None || PyObject_GetBuffer(aad_obj, aad, PyBUF_SIMPLE) == 0) {
        if (aad->len <= MAX_AEAD_INPUT)
            return 0;
        PyErr_SetString(PyExc_OverflowError, "Data or associated data too long. Max 2**31 - 1 bytes");
        PyBuffer_Release(aad);
    }
    PyBuffer_Release(nonce);
    PyBuffer_Release(data);
    return -1;
}

static void release3(Py_buffer *a, Py_buffer *b, Py_buffer *c) {
    PyBuffer_Release(a);
    PyBuffer_Release(b);
    if (c->obj != NULL)
        PyBuffer_Release(c);
}

static PyObject *Aead_encrypt(Aead *self, PyObject *args, PyObject *kwds) {
    Py_buffer nonce, data, aad;
    if (aead_args(args, kwds, &nonce, &data, &aad) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, data.len + TAG_LEN);
    if (out != NULL && seal_into(self->enc, nonce.buf, aad.buf, (int)aad.len, data.buf, (int)data.len,
                                 (unsigned char *)PyBytes_AS_STRING(out)) < 0) {
        Py_CLEAR(out);
        openssl_error("encryption");
    }
    release3(&nonce, &data, &aad);
    return out;
}

static PyObject *Aead_decrypt(Aead *self, PyObject *args, PyObject *kwds) {
    Py_buffer nonce, data, aad;
    if (aead_args(args, kwds, &nonce, &data, &aad) < 0)
        return NULL;
    PyObject *out = NULL;
    if (data.len < TAG_LEN)
        PyErr_SetNone(InvalidTag);
    else if ((out = PyBytes_FromStringAndSize(NULL, data.len - TAG_LEN)) != NULL
             && !open_into(self->dec, nonce.buf, aad.buf, (int)aad.len, data.buf, (int)data.len,
                           (unsigned char *)PyBytes_AS_STRING(out))) {
        Py_CLEAR(out);
        PyErr_SetNone(InvalidTag);
    }
    release3(&nonce, &data, &aad);
    return out;
}

/* ---- seal_batch (Rule 2) -------------------------------------------------------------- */

typedef struct {
    unsigned char kind, tag, own;
    uint32_t session;
    uint64_t counter;
    int spent; /* the counter went past 2**64 - 1: the next pack is out of range */
} Header;

static int struct_field(PyObject *obj, uint64_t max, uint64_t *out) {
    if (as_u64(obj, out) == 0 && *out <= max)
        return 0;
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError)) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        PyErr_SetString(StructError, "required argument is not an integer");
        return -1;
    }
    PyErr_Clear();
    PyErr_SetString(StructError, "argument out of range");
    return -1;
}

static int header_args(PyObject *kind, PyObject *tag, PyObject *own, PyObject *session, PyObject *counter,
                       Header *h) {
    uint64_t k, t, o, s, c;
    if (struct_field(kind, 0xFF, &k) < 0 || struct_field(tag, 0xFF, &t) < 0 || struct_field(own, 0xFF, &o) < 0
        || struct_field(session, 0xFFFFFFFFu, &s) < 0 || struct_field(counter, UINT64_MAX, &c) < 0)
        return -1;
    h->kind = (unsigned char)k, h->tag = (unsigned char)t, h->own = (unsigned char)o;
    h->session = (uint32_t)s, h->counter = c, h->spent = 0;
    return 0;
}

static void put_be(unsigned char *p, uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; i--, value >>= 8)
        p[i] = (unsigned char)value;
}

static uint64_t get_be(const unsigned char *p, int bytes) {
    uint64_t value = 0;
    for (int i = 0; i < bytes; i++)
        value = value << 8 | p[i];
    return value;
}

/* (payload, flags) of one item, as `payload, flags = item` would unpack it. */
static PyObject *packet_pair(PyObject *item) {
    PyObject *pair = PyTuple_CheckExact(item) ? Py_NewRef(item) : PySequence_Tuple(item);
    if (pair != NULL && PyTuple_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_ValueError, "expected 2 values to unpack, got %zd", PyTuple_GET_SIZE(pair));
        Py_CLEAR(pair);
    }
    return pair;
}

/* The flags byte: flags | own, in range for struct's "B". */
static int flags_byte(PyObject *flags, unsigned char own, unsigned char *out) {
    long value = PyLong_AsLong(flags);
    if (value == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        value = -1;
    }
    value |= own;
    if (value < 0 || value > 0xFF) {
        PyErr_SetString(StructError, "ubyte format requires 0 <= number <= 255");
        return -1;
    }
    *out = (unsigned char)value;
    return 0;
}

/* header || AEAD(payload) for one packet under h's counter. */
static PyObject *datagram_of(Aead *self, const Header *h, unsigned char flags, PyObject *payload_obj) {
    Py_buffer payload;
    PyObject *out = NULL;
    if (PyObject_GetBuffer(payload_obj, &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    if (payload.len > MAX_AEAD_INPUT)
        PyErr_SetString(PyExc_OverflowError, "Data or associated data too long. Max 2**31 - 1 bytes");
    else if ((out = PyBytes_FromStringAndSize(NULL, HEADER_LEN + payload.len + TAG_LEN)) != NULL) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out), nonce[NONCE_LEN] = {0};
        p[0] = h->kind, p[1] = h->tag, p[2] = flags, p[3] = 0;
        put_be(p + 4, h->session, 4);
        put_be(p + 8, h->counter, 8);
        memcpy(nonce + 4, p + 8, 8);
        if (seal_into(self->enc, nonce, p, HEADER_LEN, payload.buf, (int)payload.len, p + HEADER_LEN) < 0) {
            Py_CLEAR(out);
            openssl_error("encryption");
        }
    }
    PyBuffer_Release(&payload);
    return out;
}

/* One (payload, flags) item, checked in the Python loop's order: unpack, flags, counter. */
static PyObject *seal_one(Aead *self, Header *h, PyObject *item) {
    PyObject *pair = packet_pair(item), *out = NULL;
    unsigned char flags;
    if (pair == NULL)
        return NULL;
    if (flags_byte(PyTuple_GET_ITEM(pair, 1), h->own, &flags) == 0) {
        if (h->spent)
            PyErr_SetString(StructError, "argument out of range");
        else
            out = datagram_of(self, h, flags, PyTuple_GET_ITEM(pair, 0));
    }
    Py_DECREF(pair);
    if (out != NULL) {
        h->spent = h->counter == UINT64_MAX;
        h->counter++;
    }
    return out;
}

static PyObject *seal_all(Aead *self, PyObject *seq, Header *h) {
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        PyObject *datagram = seal_one(self, h, item);
        Py_DECREF(item);
        if (datagram == NULL || PyList_Append(out, datagram) < 0)
            Py_CLEAR(out);
        Py_XDECREF(datagram);
    }
    return out;
}

static PyObject *Aead_seal_batch(Aead *self, PyObject *args) {
    PyObject *packets, *kind, *tag, *own, *session, *counter, *seq, *out = NULL;
    Header h;
    if (!PyArg_ParseTuple(args, "OOOOOO:seal_batch", &packets, &kind, &tag, &own, &session, &counter))
        return NULL;
    if ((seq = PySequence_Fast(packets, "seal_batch: packets must be iterable")) == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(seq) == 0)
        out = PyList_New(0); /* struct.pack never ran: nothing to refuse */
    else if (header_args(kind, tag, own, session, counter, &h) == 0)
        out = seal_all(self, seq, &h);
    Py_DECREF(seq);
    return out;
}

/* ---- open_run (Rule 4) ---------------------------------------------------------------- */

typedef struct {
    Py_ssize_t authentic, bad_type, replay, auth;
    int partial;
} Tally;

enum { NEXT, STOP, FAILED };

/* The plaintext of one datagram under `self` (NULL: not authentic, no exception). */
static PyObject *open_datagram(Aead *self, const unsigned char *d, Py_ssize_t len) {
    unsigned char nonce[NONCE_LEN] = {0};
    PyObject *plain = PyBytes_FromStringAndSize(NULL, len - MIN_DATAGRAM);
    if (plain == NULL)
        return NULL;
    memcpy(nonce + 4, d + 8, 8);
    if (open_into(self->dec, nonce, d, HEADER_LEN, d + HEADER_LEN, (int)(len - HEADER_LEN),
                  (unsigned char *)PyBytes_AS_STRING(plain)))
        return plain;
    Py_DECREF(plain);
    return NULL;
}

static int deliver(PyObject *out, PyObject *plain, unsigned char flags) {
    PyObject *bits = PyLong_FromLong(flags & FL_INNER);
    PyObject *pair = bits != NULL ? PyTuple_Pack(2, plain, bits) : NULL;
    int rc = pair != NULL ? PyList_Append(out, pair) : -1;
    Py_XDECREF(bits);
    Py_XDECREF(pair);
    return rc;
}

/* One datagram of the run (its length checked by the caller): NEXT, STOP or FAILED. */
static int open_one(Aead *self, const unsigned char *d, Py_ssize_t len, uint64_t session, int tag, Window *w,
                    PyObject *out, Tally *t) {
    if (get_be(d + 4, 4) != session || d[1] != tag)
        return STOP;
    uint64_t counter = get_be(d + 8, 8);
    if (d[0] != DG_DATA && d[0] != DG_KEEPALIVE)
        return t->bad_type++, NEXT;
    if (!window_check(w, counter))
        return t->replay++, NEXT;
    PyObject *plain = open_datagram(self, d, len);
    if (plain == NULL)
        return PyErr_Occurred() ? FAILED : (t->auth++, NEXT);
    window_update(w, counter);
    t->partial |= (d[2] & FL_TAKES_PARTIAL) != 0;
    t->authentic++;
    int rc = d[0] == DG_DATA ? deliver(out, plain, d[2]) : 0;
    Py_DECREF(plain);
    return rc < 0 ? FAILED : NEXT;
}

/* One item of `datagrams`: NEXT (i advanced), STOP or FAILED. */
static int open_item(Aead *self, PyObject *item, uint64_t session, int tag, Window *w, PyObject *out, Tally *t) {
    Py_buffer view;
    if (PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0)
        return FAILED;
    int rc = view.len < MIN_DATAGRAM || view.len - HEADER_LEN > INT_MAX
                 ? STOP
                 : open_one(self, view.buf, view.len, session, tag, w, out, t);
    PyBuffer_Release(&view);
    return rc;
}

/* Opens seq's items from i (Rule 4); where it stopped, or -1 with an exception. */
static Py_ssize_t open_all(Aead *self, PyObject *seq, Py_ssize_t i, uint64_t session, int tag, Window *w,
                           PyObject *out, int first_only, Tally *t) {
    while (i < PySequence_Fast_GET_SIZE(seq) && !(first_only && t->authentic)) {
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        int rc = open_item(self, item, session, tag, w, out, t);
        Py_DECREF(item);
        if (rc == FAILED)
            return -1;
        if (rc == STOP)
            break;
        i++;
    }
    return i;
}

static PyObject *Aead_open_run(Aead *self, PyObject *args) {
    PyObject *datagrams, *session_obj, *out, *seq;
    Py_ssize_t start;
    int tag, first_only;
    Window *w;
    uint64_t session;
    Tally t = {0, 0, 0, 0, 0};
    if (!PyArg_ParseTuple(args, "OnOiO!O!p:open_run", &datagrams, &start, &session_obj, &tag, &WindowType, &w,
                          &PyList_Type, &out, &first_only))
        return NULL;
    if (start < 0)
        return PyErr_Format(PyExc_IndexError, "open_run: start %zd is negative", start);
    if (as_u64(session_obj, &session) < 0)
        return NULL;
    if ((seq = PySequence_Fast(datagrams, "open_run: datagrams must be a sequence")) == NULL)
        return NULL;
    Py_ssize_t stop = open_all(self, seq, start, session, tag, w, out, first_only, &t);
    Py_DECREF(seq);
    if (stop < 0)
        return NULL;
    return Py_BuildValue("nnnnnO", stop, t.authentic, t.bad_type, t.replay, t.auth, t.partial ? Py_True : Py_False);
}

static PyMethodDef Aead_methods[] = {
    {"encrypt", (PyCFunction)(void (*)(void))Aead_encrypt, METH_VARARGS | METH_KEYWORDS,
     "encrypt(nonce, data, associated_data) -> ciphertext || tag (as cryptography's)."},
    {"decrypt", (PyCFunction)(void (*)(void))Aead_decrypt, METH_VARARGS | METH_KEYWORDS,
     "decrypt(nonce, data, associated_data) -> plaintext; raises cryptography's InvalidTag."},
    {"seal_batch", (PyCFunction)Aead_seal_batch, METH_VARARGS,
     "seal_batch(packets, kind, tag, own_flags, session_id, counter) -> datagrams (Rule 2)."},
    {"open_run", (PyCFunction)Aead_open_run, METH_VARARGS,
     "open_run(datagrams, start, session_id, tag, window, out, first_only)\n"
     "-> (stop, authentic, bad_type, replay, auth, takes_partial_seen) (Rule 4)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Aead_members[] = {
    {"counter", T_ULONGLONG, offsetof(Aead, counter), 0,
     "The next counter to seal under this key: the epoch's counter (datachannel.Epoch), shared with Path."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject AeadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime._fastseal.Aead",
    .tp_basicsize = sizeof(Aead),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Aead(cipher, key): one key's AEAD with persistent OpenSSL contexts (Rule 1).",
    .tp_new = Aead_new,
    .tp_dealloc = (destructor)Aead_dealloc,
    .tp_methods = Aead_methods,
    .tp_members = Aead_members,
};

/* ---- Path (runtime/native/fastpath.c, part of this translation unit) ------------------ */

#include "fastpath.c"


/* ---- module --------------------------------------------------------------------------- */

static PyObject *attribute_of(const char *module, const char *name) {
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL)
        return NULL;
    PyObject *value = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return value;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastseal",
    "The data channel's seal/open loops and replay window in C (runtime/native/fastseal.c).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastseal(void) {
    if (PyType_Ready(&WindowType) < 0 || PyType_Ready(&AeadType) < 0 || PyType_Ready(&EntryType) < 0
        || PyType_Ready(&PathType) < 0)
        return NULL;
    if (InvalidTag == NULL && (InvalidTag = attribute_of("cryptography.exceptions", "InvalidTag")) == NULL)
        return NULL;
    if (StructError == NULL && (StructError = attribute_of("struct", "error")) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "ReplayWindow", (PyObject *)&WindowType) < 0
        || PyModule_AddObjectRef(m, "Aead", (PyObject *)&AeadType) < 0
        || PyModule_AddObjectRef(m, "Path", (PyObject *)&PathType) < 0
        || PyModule_AddIntConstant(m, "WINDOW", WINDOW) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
