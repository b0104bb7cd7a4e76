/* The data path's per-sector loops in C, run without the GIL: sector tokens (Hasher) and XTS
 * over many small data units (crypt_units).
 *
 * Sector tokens: the hottest loop of the data path.
 * Computes exactly what sealbox.storage.chunk.Sealer computes in Python (the tests compare
 * the two on random input): for each 4096-byte sector, SHA-256 over
 *
 *     key block (64 bytes) || volume id (u64 LE) || sector number in the volume (u64 LE)
 *                          || plaintext (4096 bytes)
 *
 * truncated to 16 bytes, and a token of all zeros (which means "no token") becomes 01 00 ...
 *
 * Why C: in Python each sector costs a few hashlib calls that hold the GIL (releasing it per
 * 4 KiB made things worse: see chunk.py), so tokens were a third of a write's GIL time and
 * half of a read's. Here a whole request is hashed in one call with the GIL released, so the
 * NBD workers hash on both cores while others parse, encrypt and write.
 *
 * The keyed state (SHA-256 after the key block) is secret: a Hasher never exposes it, refuses
 * to be pickled or re-initialised, and wipes it when it goes away. (Sealer keeps a hashlib copy
 * of the same state for its one-sector path; Python cannot wipe that one.) The low-level
 * SHA256_* API is deprecated in OpenSSL 3 but kept for ABI; unlike EVP, copying its context
 * is a plain struct copy, with no allocation per sector.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define SECTOR 4096
#define TOKEN 16
#define KEY_BLOCK 64

typedef struct {
    PyObject_HEAD
    SHA256_CTX base; /* after the key block: the secret chaining value */
    int ready;
} Hasher;

static int Hasher_init(Hasher *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"key_block", NULL};
    Py_buffer key;
    if (self->ready) { /* another thread may be hashing with the key: never swap it */
        PyErr_SetString(PyExc_TypeError, "a Hasher's key cannot be changed");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*", kwlist, &key))
        return -1;
    if (key.len != KEY_BLOCK) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "key_block must be %d bytes", KEY_BLOCK);
        return -1;
    }
    SHA256_Init(&self->base);
    SHA256_Update(&self->base, key.buf, KEY_BLOCK);
    self->ready = 1;
    PyBuffer_Release(&key);
    return 0;
}

static void Hasher_dealloc(Hasher *self) {
    OPENSSL_cleanse(&self->base, sizeof(self->base));
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void put_le64(unsigned char *out, unsigned long long v) {
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

/* The number of the first of ``count`` consecutive sectors (or units) from ``obj``; -1 with an
 * exception set if it is not a u64 or the last number would pass 2**64 - 1. */
static int run_start(PyObject *obj, Py_ssize_t count, const char *what,
                     unsigned long long *first) {
    *first = PyLong_AsUnsignedLongLong(obj);
    if (*first == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (count && *first + (unsigned long long)(count - 1) < *first) {
        PyErr_Format(PyExc_OverflowError, "%s numbers overflow 64 bits", what);
        return -1;
    }
    return 0;
}

/* tokens(volume_id, first_sector, data) -> list[bytes]: one 16-byte token per sector. */
static PyObject *Hasher_tokens(Hasher *self, PyObject *args) {
    PyObject *vid_obj, *first_obj;
    Py_buffer data;
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Hasher was not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOy*", &vid_obj, &first_obj, &data))
        return NULL;
    PyObject *result = NULL;
    unsigned char *out = NULL;
    unsigned long long vid = PyLong_AsUnsignedLongLong(vid_obj);
    if (vid == (unsigned long long)-1 && PyErr_Occurred())
        goto done;
    if (data.len % SECTOR) {
        PyErr_Format(PyExc_ValueError, "data must be whole %d-byte sectors, got %zd bytes",
                     SECTOR, data.len);
        goto done;
    }
    Py_ssize_t count = data.len / SECTOR;
    unsigned long long first;
    if (run_start(first_obj, count, "sector", &first) < 0)
        goto done;
    out = PyMem_RawMalloc(count ? (size_t)count * TOKEN : 1);
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *src = data.buf;
    Py_BEGIN_ALLOW_THREADS
    SHA256_CTX ctx;
    unsigned char salt[16], md[SHA256_DIGEST_LENGTH];
    put_le64(salt, vid);
    for (Py_ssize_t i = 0; i < count; i++) {
        put_le64(salt + 8, first + (unsigned long long)i);
        ctx = self->base;
        SHA256_Update(&ctx, salt, sizeof(salt));
        SHA256_Update(&ctx, src + (size_t)i * SECTOR, SECTOR);
        SHA256_Final(md, &ctx);
        int zero = 1;
        for (int b = 0; b < TOKEN; b++) {
            if (md[b]) {
                zero = 0;
                break;
            }
        }
        if (zero) /* all zeros means "no token" in a checksum entry */
            md[0] = 1;
        memcpy(out + (size_t)i * TOKEN, md, TOKEN);
    }
    OPENSSL_cleanse(&ctx, sizeof(ctx));
    OPENSSL_cleanse(md, sizeof(md));
    Py_END_ALLOW_THREADS
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *tok = PyBytes_FromStringAndSize((const char *)out + (size_t)i * TOKEN, TOKEN);
        if (tok == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, tok);
    }
done:
    PyMem_RawFree(out);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *Hasher_repr(PyObject *self) {
    return PyUnicode_FromString("<sector token hasher: key redacted>");
}

static PyObject *Hasher_reduce(PyObject *self, PyObject *unused) {
    PyErr_SetString(PyExc_TypeError, "a sector token hasher holds a key and cannot be pickled");
    return NULL;
}

static PyMethodDef Hasher_methods[] = {
    {"tokens", (PyCFunction)Hasher_tokens, METH_VARARGS,
     "tokens(volume_id, first_sector, data) -> list of 16-byte tokens, one per sector"},
    {"__reduce__", Hasher_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sealbox.storage._native.Hasher",
    .tp_doc = "Keyed SHA-256 sector tokens; Hasher(key_block) with a 64-byte key block.",
    .tp_basicsize = sizeof(Hasher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Hasher_init,
    .tp_dealloc = (destructor)Hasher_dealloc,
    .tp_repr = Hasher_repr,
    .tp_methods = Hasher_methods,
};

/* crypt_units(context, first_unit, unit_size, src, dst) -> bool
 *
 * AES-XTS over whole data units of ``unit_size`` bytes, unit i with the tweak first_unit + i
 * (16 bytes little-endian), on ``context``: the address of an EVP_CIPHER_CTX already set up
 * with the key and the direction (sealbox.storage.crypto's per-thread contexts, from the same
 * libcrypto). Only the tweak changes per unit (key NULL keeps the key schedule). ``dst`` may be
 * ``src`` (in place). False if OpenSSL reported a failure.
 *
 * Why: drive format 1 encrypts each 4 KiB sector as its own unit, two OpenSSL calls per sector.
 * Through ctypes that is about two microseconds of overhead per sector, more than the AES;
 * here the loop costs nothing, and a long run releases the GIL once. */
static PyObject *crypt_units(PyObject *self, PyObject *args) {
    unsigned long long address;
    PyObject *first_obj;
    Py_ssize_t unit;
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "KOny*w*", &address, &first_obj, &unit, &src, &dst))
        return NULL;
    PyObject *result = NULL;
    if (address == 0 || unit < 16 || unit % 16 || unit > INT_MAX || src.len % unit ||
        dst.len != src.len) {
        PyErr_SetString(PyExc_ValueError,
                        "crypt_units needs a context, units of whole blocks, and src and dst "
                        "of the same whole number of units");
        goto done;
    }
    Py_ssize_t count = src.len / unit;
    unsigned long long first;
    if (run_start(first_obj, count, "unit", &first) < 0)
        goto done;
    EVP_CIPHER_CTX *ctx = (EVP_CIPHER_CTX *)(uintptr_t)address;
    const unsigned char *in = src.buf;
    unsigned char *out = dst.buf;
    int ok = 1;
    /* Short runs keep the GIL: each release is a hand-off between the NBD workers (crypto.py). */
    PyThreadState *saved = src.len >= 65536 ? PyEval_SaveThread() : NULL;
    unsigned char iv[16] = {0};
    for (Py_ssize_t i = 0; i < count; i++) {
        put_le64(iv, first + (unsigned long long)i);
        int written = 0;
        ok &= EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) == 1;
        ok &= EVP_CipherUpdate(ctx, out + (size_t)i * (size_t)unit, &written,
                               in + (size_t)i * (size_t)unit, (int)unit) == 1;
    }
    if (saved != NULL)
        PyEval_RestoreThread(saved);
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef module_methods[] = {
    {"crypt_units", crypt_units, METH_VARARGS,
     "crypt_units(context, first_unit, unit_size, src, dst) -> bool: XTS over whole units"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "The data path's per-sector loops (tokens, XTS units), without the GIL.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&HasherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HasherType);
    if (PyModule_AddObject(m, "Hasher", (PyObject *)&HasherType) < 0) {
        Py_DECREF(&HasherType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
