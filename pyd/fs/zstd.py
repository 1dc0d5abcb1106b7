"""zstd decompression for layers (application/vnd.oci.image.layer.v1.tar+zstd)
through the host's libzstd, loaded with cffi's ABI mode when a zstd layer
first comes: Python 3.11's stdlib has no zstd, and a host without libzstd
still pulls every gzip image (a zstd one then fails with a clear message)."""

from .. import errors

_lib = None
_ffi = None
_CDEF = """
typedef struct ZSTD_DCtx_s ZSTD_DStream;
typedef struct { const void* src; size_t size; size_t pos; } ZSTD_inBuffer;
typedef struct { void* dst; size_t size; size_t pos; } ZSTD_outBuffer;
ZSTD_DStream* ZSTD_createDStream(void);
size_t ZSTD_freeDStream(ZSTD_DStream* zds);
size_t ZSTD_initDStream(ZSTD_DStream* zds);
size_t ZSTD_decompressStream(ZSTD_DStream* zds, ZSTD_outBuffer* output, ZSTD_inBuffer* input);
unsigned ZSTD_isError(size_t code);
const char* ZSTD_getErrorName(size_t code);
size_t ZSTD_DStreamOutSize(void);
"""


def _load():
    global _lib, _ffi
    if _lib is None:
        import cffi
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        try:
            _lib = ffi.dlopen("libzstd.so.1")
        except OSError as e:
            raise errors.PydError("this layer is zstd-compressed and the host has no libzstd.so.1 "
                                  "(install libzstd1)") from e
        _ffi = ffi
    return _ffi, _lib


class Reader:
    """A read(n) stream of the decompressed bytes of the zstd stream `src`."""

    def __init__(self, src):
        self._ffi, self._lib = _load()
        self._src = src
        self._ds = self._ffi.gc(self._lib.ZSTD_createDStream(), self._lib.ZSTD_freeDStream)
        self._lib.ZSTD_initDStream(self._ds)
        self._out_size = self._lib.ZSTD_DStreamOutSize()
        self._pending = b""
        self._in = None
        self._inbuf = self._ffi.new("ZSTD_inBuffer *")
        self._eof = False

    def read(self, n=-1):
        while not self._pending:
            if self._in is None or self._inbuf.pos >= self._inbuf.size:
                if self._eof:
                    return b""
                data = self._src.read(1 << 20)
                if not data:
                    self._eof = True
                    return b""
                self._in = self._ffi.from_buffer(data)
                self._keep = data
                self._inbuf.src, self._inbuf.size, self._inbuf.pos = self._in, len(data), 0
            out = self._ffi.new("char[]", self._out_size)
            outbuf = self._ffi.new("ZSTD_outBuffer *", {"dst": out, "size": self._out_size, "pos": 0})
            rc = self._lib.ZSTD_decompressStream(self._ds, outbuf, self._inbuf)
            if self._lib.ZSTD_isError(rc):
                raise errors.PydError("zstd: " + self._ffi.string(self._lib.ZSTD_getErrorName(rc)).decode())
            self._pending = self._ffi.buffer(out, outbuf.pos)[:]
        if n is None or n < 0:
            n = len(self._pending)
        data, self._pending = self._pending[:n], self._pending[n:]
        return data
