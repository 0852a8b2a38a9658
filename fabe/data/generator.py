"""The embedded corpus: a seeded generator of realistic C functions in the style of Devign's
FFmpeg and QEMU functions (decoders, demuxers, virtio handlers, MMIO callbacks, block
drivers, ...). It needs nothing from outside, so the app, the tiny tokenizer and the tests
work offline. Output is fully deterministic for a given `(n, seed)`, and it is
*prefix-stable*: one `random.Random(seed)` is consumed function after function, so
`generate_functions(n, s)[:k] == generate_functions(k, s)` for k <= n. Every emitted
function parses with tree-sitter without error, has 5-40 lines, at least one parameter or
local variable and at least two statements in its body.

Target rule of the generated corpus (what a victim classifier can learn):
    A *sink* is (a) a copy of N bytes or elements into a fixed-size local array
    `T arr[SIZE];` -- a call with `arr` as destination and N as its last argument
    (`memcpy(arr, src, N)`, `bytestream2_get_buffer(&gb, arr, N)`, `qemu_get_buffer(f, arr,
    N)`, ...) or a loop `for (i = 0; i < N; i++) { arr[i] = ...; }`; (b) a write
    `arr[IDX] = ...`, `arr[IDX]++` or `arr[IDX] += ...` into such an array with an index
    from a parameter or the input; (c) a fallible allocation (`av_malloc`, `av_mallocz`,
    `av_malloc_array`, `av_realloc`, `malloc`, `calloc`, `g_try_malloc`, `g_try_malloc0`)
    whose result is then used. A sink is *guarded* when (a)/(b) are preceded by a check
    `if (... N > sizeof(arr) ...)` (or `>=`, or `ARRAY_SIZE(arr)`, `FF_ARRAY_ELEMS(arr)`,
    or the array's size macro instead of `sizeof`) and (c) is followed, before any use, by
    `if (!p)` or `if (p == NULL)`. A copy of a constant size (`sizeof(arr)`) is no sink.
    target = 1 iff the function has at least one unguarded sink; every sink of a target = 0
    function is guarded (about 45% of functions are target = 1). Unguarded sinks sometimes
    come after a decoy check of the wrong kind (`if (len < 4)`). Glib's `g_malloc`/`g_new0`
    abort on failure and are never sinks.
"""

from __future__ import annotations

import logging
import random
import re
from typing import Callable

from fabe.data import cparse
from fabe.data.corpus import CFunction

logger = logging.getLogger(__name__)

TARGET_RATE = 0.45


# ---------------------------------------------------------------------------------------
# Vocabulary of the generator
# ---------------------------------------------------------------------------------------

_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto "
    "if inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while".split())

_FF_CODECS = (
    "h264", "hevc", "vp8", "vp9", "mpeg4", "mpeg12", "aac", "ac3", "mp3", "flac", "opus",
    "vorbis", "dnxhd", "prores", "mjpeg", "png", "gif", "tiff", "bmp", "dca", "wmv2", "wma",
    "alac", "ape", "tta", "cavs", "rv34", "svq3", "indeo", "cinepak", "smacker", "bink",
    "h263", "vc1", "theora", "snow", "ffv1", "huffyuv", "utvideo", "qtrle", "rpza", "msrle",
    "tscc", "zmbv", "vmd", "xan", "roq", "sipr", "adpcm", "pcm", "eac3", "truehd", "mlp",
    "atrac3", "cook", "nellymoser", "qdm2", "sanm", "hqx", "exr", "dirac", "jpeg2000", "webp",
    "dvbsub", "pgssub", "mss2", "g2m", "tak", "wavpack", "shorten", "imc", "iff", "pcx",
    "sgi", "targa", "xwd", "vqa", "aic", "cllc", "fraps", "lagarith", "loco", "mimic",
    "qpeg", "tiertex", "vp56", "wnv1", "yop", "hap", "dxv", "magicyuv", "sheervideo", "rscc",
)
_FF_FORMATS = (
    "mov", "matroska", "avi", "mpegts", "flv", "rtp", "rtsp", "hls", "dv", "mxf", "nut",
    "ogg", "wav", "asf", "rm", "nsv", "ivf", "caf", "aiff", "voc", "xmv", "wtv", "r3d",
    "gxf", "lxf", "mmf", "swf", "rl2", "idcin", "vqf", "w64", "xwma", "ape", "smacker",
    "bink", "flic", "mtv", "paf", "pva", "sol", "thp", "vivo", "wsvqa", "yuv4mpeg",
)
_FF_VERBS = (
    "decode", "encode", "parse", "read", "write", "init", "close", "flush", "probe", "unpack",
    "pack", "get", "put", "set", "update", "reset", "fill", "copy", "scale", "filter",
    "handle", "process", "output", "emit", "build", "alloc", "free", "load", "store",
    "compute", "calc", "apply", "check", "validate", "skip", "find", "add", "merge", "split",
    "convert", "predict", "dequant", "transform", "refill", "sync", "seek", "setup", "unref",
)
_FF_NOUNS = (
    "frame", "packet", "header", "slice", "block", "mb", "coeffs", "picture", "plane",
    "stream", "chunk", "atom", "tag", "palette", "table", "vlc", "bitstream", "extradata",
    "samples", "channel", "subframe", "band", "tile", "window", "residual", "quant_matrix",
    "dc", "mvs", "ref_list", "sps", "pps", "sei", "nal", "units", "segment", "index", "trak",
    "moov", "cluster", "track", "cues", "entry", "entries", "metadata", "section",
    "descriptor", "pes", "pmt", "gop", "field", "row", "line", "pixels", "lut", "hist",
    "sfb", "envelope", "spectrum", "lpc", "pitch", "codebook", "huffman", "rle", "lzw",
    "dict", "qmat", "scan", "edge", "level", "run", "prefix", "tables", "mode_info", "probs",
    "subblock", "superblock", "partition", "bands", "scalefactors", "lsf", "stsd", "stts",
)
_QEMU_DEVICES = (
    "virtio_net", "virtio_blk", "virtio_scsi", "virtio_gpu", "virtio_balloon",
    "virtio_serial", "virtio_input", "virtio_crypto", "e1000", "e1000e", "rtl8139", "pcnet",
    "ne2000", "eepro100", "vmxnet3", "ide", "ahci", "scsi_disk", "lsi", "megasas", "esp",
    "ehci", "ohci", "uhci", "xhci", "usb_net", "usb_hid", "usb_serial", "vga", "cirrus",
    "qxl", "sdhci", "pflash", "fdctrl", "serial", "i8254", "hpet", "rtc", "apic", "ioapic",
    "gic", "pl011", "pl110", "pl181", "omap_i2c", "pxa2xx_mmci", "etsec", "stellaris_enet",
    "xilinx_axienet", "imx_fec", "smc91c111", "lan9118", "mipsnet", "tulip", "sungem",
    "spapr_vio", "vfio_pci", "xen_disk", "nvme", "pvscsi", "am53c974", "mptsas", "rocker",
    "cadence_gem", "ftgmac100", "msix", "acpi_pm", "ich9_lpc", "piix4", "fw_cfg", "smbus",
    "m25p80", "nand", "onenand", "i8257", "rc4030", "tsc210x", "wm8750", "ac97", "es1370",
    "intel_hda", "sb16", "cs4231a", "escc", "mcf_uart", "milkymist_vgafb", "tc6393xb",
)
_QEMU_BLOCK = (
    "qcow2", "qcow", "vmdk", "vdi", "vhdx", "vpc", "parallels", "dmg", "cloop", "bochs",
    "qed", "raw", "nbd", "iscsi", "nfs", "sheepdog", "rbd", "ssh", "curl", "vvfat", "quorum",
    "blkdebug", "throttle", "mirror", "backup", "replication",
)
_QEMU_VERBS = (
    "handle", "process", "update", "read", "write", "load", "save", "reset", "realize",
    "init", "set", "get", "receive", "send", "transmit", "flush", "map", "unmap", "check",
    "validate", "parse", "complete", "cancel", "start", "stop", "enable", "disable",
    "notify", "kick", "fill", "drain", "commit", "pop", "push", "alloc", "free", "lookup",
    "find", "register", "setup", "sync", "dump", "decode", "queue", "raise", "lower",
)
_QEMU_NOUNS = (
    "reg", "regs", "config", "status", "queue", "ring", "desc", "descriptor", "irq", "dma",
    "buffer", "packet", "frame", "header", "cmd", "command", "request", "req", "sector",
    "cluster", "l2_table", "refcount", "snapshot", "bitmap", "extent", "footer", "bat", "sg",
    "iov", "tx", "rx", "ctrl", "mac", "vlan", "mode", "port", "channel", "fifo", "timer",
    "event", "intr", "bar", "region", "page", "sense", "cdb", "lun", "transfer", "urb",
    "td", "qh", "trb", "slot", "endpoint", "cursor", "surface", "palette", "framebuffer",
    "clipboard", "keyboard", "pointer", "feature", "link", "phy", "mdio", "eeprom", "rom",
    "flash", "partition", "msg", "mbox", "doorbell", "vector", "window", "mask", "entry",
)
_ATTRS = ("size", "count", "offset", "idx", "len", "flags", "type", "mode", "pos", "num",
          "bits", "shift", "scale", "stride", "max", "base", "id", "state", "addr", "limit")
_PLAIN_FIELDS_FF = ("width", "height", "flags", "bit_depth", "channels", "sample_rate",
                    "version", "mode", "nb_planes", "frame_type", "key_frame", "qscale",
                    "last_type", "chroma_format", "has_alpha", "pal_size", "nb_slices")
_PLAIN_FIELDS_QEMU = ("status", "ctrl", "irq_level", "config", "mode", "isr", "features",
                      "intr_mask", "cur_cmd", "tx_len", "rx_count", "state", "enabled",
                      "addr", "base", "flags", "pending", "cursor", "index", "version")
_CONST_KINDS = ("MODE", "TYPE", "CMD", "REG", "FLAG", "STATE", "CTRL", "STATUS", "OP", "TAG",
                "FMT", "CODE", "KIND", "EVT")
_CONST_WORDS = ("INTRA", "INTER", "KEY", "RAW", "RLE", "SKIP", "COPY", "RESET", "READ",
                "WRITE", "START", "STOP", "ENABLE", "DISABLE", "ACK", "NAK", "DATA", "IDLE",
                "BUSY", "DONE", "ERROR", "SYNC", "EOS", "PALETTE", "LITERAL", "MATCH", "FILL",
                "FLUSH", "CONFIG", "QUERY", "SET", "GET", "LINK", "HALT", "IRQ", "DMA", "SPLIT",
                "MERGE", "MONO", "STEREO", "LOW", "HIGH", "FAST", "SLOW", "SHORT", "LONG")
_ACRONYMS = frozenset((
    "ide", "usb", "pci", "vga", "rtc", "dma", "irq", "gic", "hpet", "ahci", "ehci", "ohci",
    "uhci", "xhci", "qxl", "fec", "esp", "lsi", "nbd", "scsi", "sdhci", "aac", "ac3", "dca",
    "png", "gif", "bmp", "dv", "mxf", "asf", "rtp", "rtsp", "hls", "flv", "avi", "mov",
    "ivf", "caf", "swf", "gxf", "lxf", "nut", "rm", "tak", "exr", "hqx", "aic", "mlp",
    "tta", "ape", "imc", "iff", "pcx", "sgi", "xwd", "vqa", "hap", "dxv", "nsv", "wtv",
    "mtv", "paf", "pva", "sol", "thp", "hda", "gem", "gpu", "blk", "vio", "pm", "cfg", "mmci",
))
_FF_ALLOCS = ("av_malloc", "av_mallocz", "malloc")
_QEMU_ALLOCS = ("g_try_malloc", "g_try_malloc0", "malloc")
_BYTE_TYPES = ("uint8_t", "uint8_t", "unsigned char", "char")
_ELEM_TYPES = ("int16_t", "int", "uint16_t", "uint32_t", "int32_t", "uint8_t", "unsigned")
_SIZES = (8, 16, 16, 32, 32, 64, 64, 128, 256, 512, 1024)

_WIDTHS = ("byte", "be16", "le16", "be32", "le32")
_MOV_ATOMS = ("stsd", "stts", "trak", "moov", "udta", "dref", "ftyp", "chpl", "esds", "tfhd",
              "trun", "sidx", "pssh", "senc", "colr", "hdlr")
_BLOCK_OBJECTS = ("header", "l2_table", "refcount_block", "snapshot", "extent", "footer", "bat",
                  "cluster", "bitmap", "sector")

Lines = list[tuple[int, str]]  # (relative indentation level, text)


def _camel(word: str) -> str:
    """`virtio_net` -> `VirtIONet`, `h264` -> `H264`, `matroska` -> `Matroska`."""
    out = []
    for part in word.split("_"):
        if part == "virtio":
            out.append("VirtIO")
        elif part in _ACRONYMS or part[-1].isdigit():
            out.append(part.upper())
        else:
            out.append(part.capitalize())
    return "".join(out)


def _words(noun: str) -> str:
    return noun.replace("_", " ")


# ---------------------------------------------------------------------------------------
# The function builder
# ---------------------------------------------------------------------------------------


class _Fn:
    """State of one function being generated: signature, locals, body and error style."""

    def __init__(self, rng: random.Random, ff: bool):
        self.rng = rng
        self.ff = ff  # FFmpeg style (else QEMU)
        self.used: set[str] = set(_C_KEYWORDS)
        self.name = ""
        self.ret_type = "int"
        self.params: list[tuple[str, str]] = []
        self.locals: list[tuple[str, str, str | None]] = []  # (type, name, initializer)
        self.prologue: Lines = []
        self.body: Lines = []
        self.cleanup: Lines = []
        self.final: list[str] = ["return 0;"]
        self.ctx = ""  # a struct pointer with fields ("s", "c", "vs", ...)
        self.logctx = ""  # first argument of av_log
        self.reader = "none"
        self.src = ""  # an input byte pointer
        self.lens: list[str] = []  # integer variables holding a length from the caller/input
        self.ints: list[str] = []  # integer variables usable as values/indices
        self.subject = ""  # device or codec word used in names and messages
        self.noun = ""
        self.goto = ""  # label name when errors jump to a cleanup label
        self.style = "error"  # "error": label only on error paths; "shared": every path
        self.goto_used = False
        self.ret_var = ""
        self.outputs: list[str] = []  # pointer parameters the function writes through
        self.const_prefix = ""

    def size(self) -> int:
        """Roughly the number of lines rendered so far."""
        return (3 + len(self.locals) + len(self.prologue) + len(self.body) + len(self.cleanup)
                + len(self.final) + (2 if self.goto else 0))

    # -- names ---------------------------------------------------------------------------
    def pick(self, seq: tuple[str, ...] | list[str]) -> str:
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def fresh(self, cands: list[str] | tuple[str, ...]) -> str:
        """An unused identifier: one of `cands`, else the first with a number appended."""
        order = list(cands)
        self.rng.shuffle(order)
        for cand in order:
            if cand not in self.used and not cand.endswith("_rb"):
                self.used.add(cand)
                return cand
        base, k = order[0], 2
        while f"{base}{k}" in self.used:
            k += 1
        self.used.add(f"{base}{k}")
        return f"{base}{k}"

    def param(self, ctype: str, cands: list[str] | tuple[str, ...]) -> str:
        name = self.fresh(cands)
        self.params.append((ctype, name))
        return name

    def local(self, ctype: str, cands: list[str] | tuple[str, ...], init: str | None = None,
              front: bool = False) -> str:
        name = self.fresh(cands)
        entry = (ctype, name, init)
        self.locals.insert(0, entry) if front else self.locals.append(entry)
        return name

    def field(self) -> str:
        nouns = _FF_NOUNS if self.ff else _QEMU_NOUNS
        plain = _PLAIN_FIELDS_FF if self.ff else _PLAIN_FIELDS_QEMU
        name = self.pick(plain) if self.chance(0.35) else f"{self.pick(nouns)}_{self.pick(_ATTRS)}"
        return f"{self.ctx}->{name}"

    def other_noun(self) -> str:
        return self.pick(_FF_NOUNS if self.ff else _QEMU_NOUNS)

    def const(self) -> str:
        return f"{self.const_prefix}_{self.pick(_CONST_KINDS)}_{self.pick(_CONST_WORDS)}"

    def helper(self) -> str:
        verbs, nouns = (_FF_VERBS, _FF_NOUNS) if self.ff else (_QEMU_VERBS, _QEMU_NOUNS)
        pre = self.pick(("ff_", "", f"{self.subject}_")) if self.ff else f"{self.subject}_"
        return f"{pre}{self.pick(verbs)}_{self.pick(nouns)}"

    def value_var(self) -> str:
        """An integer variable or field holding some value."""
        if self.ints and self.chance(0.6):
            return self.pick(self.ints)
        return self.field() if self.ctx else self.new_read_var()

    # -- reading input ---------------------------------------------------------------------
    def read_expr(self) -> str:
        r, k = self.reader, self.rng.choice((0, 1, 2, 4, 6, 8))
        if r == "gb2":
            return f"bytestream2_get_{self.pick(_WIDTHS + ('be24',))}(&gb)"
        if r == "bs":
            return f"bytestream_get_{self.pick(_WIDTHS)}(&{self.src})"
        if r == "gbits":
            return self.pick((f"get_bits(gb, {self.rng.randint(1, 16)})", "get_bits1(gb)",
                              "get_ue_golomb(gb)", "get_bits_long(gb, 32)"))
        if r == "avio":
            return f"avio_{self.pick(('r8', 'rb16', 'rl16', 'rb24', 'rb32', 'rl32'))}(pb)"
        if r == "qfile":
            return f"qemu_get_{self.pick(('byte', 'be16', 'be32', 'be64', 'sbe32'))}(f)"
        if r == "ffbuf":
            return f"AV_{self.pick(('RB16', 'RL16', 'RB32', 'RL32', 'RB24'))}({self.src} + {k})"
        if r == "qbuf":
            return self.pick((f"ldl_le_p({self.src} + {k})", f"lduw_be_p({self.src} + {k})",
                              f"ldl_be_p({self.src} + {k})", f"{self.src}[{k}]"))
        if r == "vnc":
            return f"read_u{self.pick(('8', '16', '32'))}({self.src}, {k})"
        if r == "mmio":
            return self.pick(("val & 0xff", "(val >> 8) & 0xffff", "extract32(val, 0, 8)",
                              "extract32(val, 16, 16)", "val >> 2"))
        if r == "iov":
            cfg = f"{self.other_noun()}_{self.pick(_ATTRS)}"
            return self.pick(("iov_size(elem->out_sg, elem->out_num)", "elem->out_num",
                              "elem->in_sg[0].iov_len", "iov_size(elem->in_sg, elem->in_num)",
                              f"virtio_ldl_p(vdev, &{self.ctx}->config.{cfg})",
                              f"virtio_lduw_p(vdev, &{self.ctx}->config.{cfg})"))
        if r == "blk":
            hdr = f"{self.ctx}->header.{self.other_noun()}_{self.pick(_ATTRS)}"
            return f"be{self.pick(('16', '32', '32', '64'))}_to_cpu({hdr})"
        return self.field() if self.ctx else str(self.rng.randint(1, 64))

    def copy_stmt(self, dst: str, n: str) -> str | None:
        """A statement copying `n` input bytes into `dst` (destination, then `n` last)."""
        r, k = self.reader, self.rng.choice((0, 2, 4, 8))
        table = {
            "gb2": f"bytestream2_get_buffer(&gb, {dst}, {n});",
            "bs": f"memcpy({dst}, {self.src}, {n});",
            "avio": f"avio_read(pb, {dst}, {n});",
            "qfile": f"qemu_get_buffer(f, {dst}, {n});",
            "ffbuf": f"memcpy({dst}, {self.src} + {k}, {n});",
            "qbuf": f"memcpy({dst}, {self.src} + {k}, {n});",
            "vnc": f"memcpy({dst}, {self.src} + {k}, {n});",
            "mmio": f"dma_memory_read(&address_space_memory, {self.ctx}->"
                    f"{self.pick(_QEMU_NOUNS)}_addr, {dst}, {n});",
            "iov": f"iov_to_buf(elem->out_sg, elem->out_num, {k}, {dst}, {n});",
            "blk": f"{self.ret_var} = bdrv_pread(bs->file, offset, {dst}, {n});",
        }
        return table.get(r)

    def new_read_var(self, role: str = "val") -> str:
        """Declare an integer local, emit `v = <read>;` and return the name."""
        noun = self.noun
        cands = {
            "val": ("val", "v", "tmp", "value", "word", "bits", "flags", "code", "tag", "mode",
                    "type", "version", "magic", "cmd", "hdr", f"{noun}_type", f"{noun}_flags",
                    "opcode", "sel", "marker", "id"),
            "len": ("len", "size", "length", "n", "count", "data_len", "chunk_size", "nb_bytes",
                    "payload_len", f"{noun}_size", f"{noun}_len", "bytes", "elen", "dlen"),
            "idx": ("idx", "index", "slot", "num", "ch", "entry", "reg", "qidx", f"{noun}_idx",
                    "sym", "pos", "bank", "port", "id"),
        }[role]
        ctype = self.pick(("int", "int", "unsigned", "uint32_t", "unsigned int") if role != "val"
                          else ("int", "unsigned", "uint32_t", "uint16_t", "int"))
        name = self.local(ctype, cands)
        self.body.append((0, f"{name} = {self.read_expr()};"))
        (self.lens if role == "len" else self.ints).append(name)
        return name

    def length_var(self) -> str:
        if self.lens and self.chance(0.6):
            return self.pick(self.lens)
        return self.new_read_var("len")

    # -- errors, logging ---------------------------------------------------------------
    def error_code(self, kind: str) -> str:
        if self.ret_type == "void":
            return ""
        if self.ret_type not in ("int", "ssize_t", "int64_t"):
            return "NULL" if self.ret_type.endswith("*") else "0"
        if self.ff:
            return {"nomem": "AVERROR(ENOMEM)", "io": self.pick(("AVERROR(EIO)", "AVERROR_EOF")),
                    "inval": self.pick(("AVERROR_INVALIDDATA", "AVERROR(EINVAL)",
                                        "AVERROR_INVALIDDATA", "AVERROR_PATCHWELCOME", "-1"))}[kind]
        return {"nomem": "-ENOMEM", "io": self.pick(("-EIO", "-1")),
                "inval": self.pick(("-EINVAL", "-1", "-EINVAL", "-ENOTSUP", "-EFBIG",
                                    "-EIO"))}[kind]

    def fail(self, kind: str = "inval") -> Lines:
        """Statements leaving the function on an error."""
        code = self.error_code(kind)
        if self.goto:
            self.goto_used = True
            return ([(0, f"{self.ret_var} = {code};")] if code and self.ret_var else []) + \
                [(0, f"goto {self.goto};")]
        return [(0, f"return {code};" if code else "return;")]

    def fail_keep(self) -> Lines:
        """Leave the function passing on the error already held in the return variable."""
        if self.goto:
            self.goto_used = True
            return [(0, f"goto {self.goto};")]
        if self.ret_var and self.ret_type in ("int", "ssize_t"):
            return [(0, f"return {self.ret_var};")]
        return self.fail("io")

    def log(self, args: list[str], severe: bool = True) -> str:
        """One logging statement mentioning the function's noun."""
        n = _words(self.other_noun() if self.chance(0.3) else self.noun)
        if args:
            msg = self.pick((f"Invalid {n} %d", f"{n} too large: %u", f"unsupported {n} type 0x%x",
                             f"bad {n} count %d", f"{n} size %d out of range", f"unknown {n} %d",
                             f"{n} %d exceeds limit"))
        else:
            msg = self.pick((f"error reading {n}", f"{n} missing", f"not enough data for {n}",
                             f"failed to allocate {n}", f"{n} not supported", f"invalid {n}"))
        a = "".join(f", {x}" for x in args[:1]) if "%" in msg else ""
        if self.ff:
            lvl = self.pick(("AV_LOG_ERROR", "AV_LOG_ERROR", "AV_LOG_WARNING")) if severe else \
                self.pick(("AV_LOG_DEBUG", "AV_LOG_VERBOSE", "AV_LOG_TRACE"))
            return f'av_log({self.logctx}, {lvl}, "{msg}\\n"{a});'
        if self.reader == "vnc":
            return f'VNC_DEBUG("{msg}\\n"{a});'
        form = self.rng.randrange(4)
        if form == 0:
            return f'qemu_log_mask(LOG_GUEST_ERROR, "%s: {msg}\\n", __func__{a});'
        if form == 1:
            return f'error_report("{self.subject}: {msg}"{a});'
        if form == 2:
            return f'DPRINTF("{msg}\\n"{a});'
        event = f"{self.subject}_{self.noun}_{self.pick(('err', 'bad', 'invalid', 'oob'))}"
        return f"trace_{event}({', '.join(args[:1])});"

    def block(self, header: str, inner: Lines, braces: bool | None = None) -> Lines:
        """`header {` inner `}`; FFmpeg style may drop braces around one statement."""
        if braces is None:
            braces = not (self.ff and len(inner) == 1 and inner[0][0] == 0 and self.chance(0.45))
        out = [(0, f"{header} {{" if braces else header)]
        out += [(lvl + 1, t) for lvl, t in inner]
        return out + [(0, "}")] if braces else out

    def emit(self, lines: Lines) -> None:
        self.body.extend(lines)


# ---------------------------------------------------------------------------------------
# Signatures: each sets name, parameters, context pointer, input reader and final return
# ---------------------------------------------------------------------------------------

_Sig = Callable[[_Fn], None]


def _ff_prefix(fn: _Fn) -> str:
    return fn.pick(("", f"{fn.subject}_", f"ff_{fn.subject}_"))


def _sig_ff_decode(fn: _Fn) -> None:
    """`decode_frame(AVCodecContext *avctx, void *data, int *got_frame, AVPacket *avpkt)`."""
    codec = fn.subject
    fn.name = fn.pick((f"{codec}_decode_frame", "decode_frame", f"{codec}_decode_{fn.noun}",
                       f"decode_{fn.noun}_frame", f"{codec}_decode_packet"))
    avctx = fn.param("AVCodecContext *", ("avctx",))
    data = fn.param("void *", ("data",))
    got = fn.param("int *", ("got_frame", "got_frame_ptr", "data_size"))
    pkt = fn.param("AVPacket *", ("avpkt", "pkt"))
    fn.ctx = fn.local(f"{_camel(codec)}Context *", ("s", "c", "ctx"), f"{avctx}->priv_data")
    frame = fn.local("AVFrame *", ("frame", "pic", "p"), data)
    fn.src = fn.local("const uint8_t *", ("buf",), f"{pkt}->data")
    size = fn.local("int", ("buf_size",), f"{pkt}->size")
    fn.lens.append(size)
    fn.logctx = avctx
    fn.reader = fn.pick(("gb2", "bs", "ffbuf"))
    if fn.reader == "gb2":
        fn.local("GetByteContext", ("gb",))
        fn.prologue.append((0, f"bytestream2_init(&gb, {fn.src}, {size});"))
    fn.final = [f"*{got} = 1;", f"return {size};"]
    fn.ints.append(f"{frame}->key_frame")


def _sig_ff_ctx_buf(fn: _Fn) -> None:
    """`static int xx_parse_header(XXContext *s, const uint8_t *buf, int buf_size)`."""
    fn.name = f"{_ff_prefix(fn)}{fn.pick(_FF_VERBS)}_{fn.noun}"
    fn.ctx = fn.param(f"{_camel(fn.subject)}Context *", ("s", "c", "ctx"))
    fn.src = fn.param("const uint8_t *", ("buf", "src", "data", "ptr"))
    fn.lens.append(fn.param(fn.pick(("int", "int", "size_t", "unsigned")),
                            ("buf_size", "size", "len", "length", "src_size", "data_size")))
    fn.logctx = f"{fn.ctx}->avctx"
    fn.reader = fn.pick(("bs", "ffbuf", "gb2"))
    if fn.reader == "gb2":
        fn.local("GetByteContext", ("gb",))
        fn.prologue.append((0, f"bytestream2_init(&gb, {fn.src}, {fn.lens[0]});"))
    fn.final = [fn.pick(("return 0;", "return 0;", f"return {fn.lens[0]};"))]


def _sig_ff_gbits(fn: _Fn) -> None:
    """`static int decode_residual(H264Context *s, GetBitContext *gb, int n)`."""
    fn.name = f"{_ff_prefix(fn)}{fn.pick(('decode', 'read', 'parse', 'unpack', 'get'))}_{fn.noun}"
    fn.ctx = fn.param(f"{_camel(fn.subject)}Context *", ("s", "c", "ctx", "h"))
    fn.param("GetBitContext *", ("gb",))
    if fn.chance(0.5):
        fn.ints.append(fn.param("int", ("n", "ch", "plane", "index", "mb_x", "sb", "band")))
    fn.logctx = f"{fn.ctx}->avctx"
    fn.reader = "gbits"
    fn.ret_type = fn.pick(("int", "int", "void"))
    fn.final = ["return 0;"] if fn.ret_type == "int" else []


def _sig_ff_demux(fn: _Fn) -> None:
    """`static int xx_read_packet(AVFormatContext *s, AVPacket *pkt)` and friends."""
    fmt = fn.pick(_FF_FORMATS)
    fn.subject = fmt
    if fmt == "mov" and fn.chance(0.6):
        fn.name = f"mov_read_{fn.pick(_MOV_ATOMS + (fn.noun,))}"
        fn.ctx = fn.param("MOVContext *", ("c",))
        fn.param("AVIOContext *", ("pb",))
        atom = fn.param("MOVAtom", ("atom",))
        fn.logctx = f"{fn.ctx}->fc"
        fn.ints.append(f"{atom}.size")
    else:
        kind = fn.pick(("read_packet", "read_header", f"read_{fn.noun}", f"parse_{fn.noun}"))
        fn.name = f"{fmt}_{kind}"
        s = fn.param("AVFormatContext *", ("s", "ctx"))
        if fn.chance(0.6):
            pkt = fn.param("AVPacket *", ("pkt",))
            fn.ints.append(f"{pkt}->stream_index")
        fn.ctx = fn.local(f"{_camel(fmt)}DemuxContext *", ("c", "priv", "mc"), f"{s}->priv_data")
        fn.local("AVIOContext *", ("pb",), f"{s}->pb")
        fn.logctx = s
    fn.reader = "avio"


def _sig_ff_init(fn: _Fn) -> None:
    """`static int xx_decode_init(AVCodecContext *avctx)` / close / flush."""
    kind = fn.pick(("decode_init", "encode_init", "init", "decode_end", f"init_{fn.noun}",
                    f"alloc_{fn.noun}"))
    fn.name = f"{fn.subject}_{kind}"
    avctx = fn.param("AVCodecContext *", ("avctx",))
    fn.ctx = fn.local(f"{_camel(fn.subject)}Context *", ("s", "c", "ctx"), f"{avctx}->priv_data")
    fn.logctx = avctx
    fn.lens.append(fn.local("int", ("size", "extradata_size", "len"), f"{avctx}->extradata_size"))
    fn.src = fn.local("const uint8_t *", ("edata", "extradata", "ptr"), f"{avctx}->extradata")
    fn.reader = "ffbuf"
    fn.ints.extend((f"{avctx}->width", f"{avctx}->height", f"{avctx}->channels"))


def _sig_ff_dsp(fn: _Fn) -> None:
    """`static void xx_put_pixels_c(uint8_t *dst, const uint8_t *src, ptrdiff_t stride, int h)`."""
    verb = fn.pick(("put", "avg", "add", "idct", "filter", "copy", "scale", "clear", "emulate"))
    obj = fn.pick(("pixels", "block", "lines", "edges", "row", "col", "plane", "samples"))
    suffix = fn.pick(("_c", "", "8_c", "16_c", "_mmx"))
    fn.name = f"{fn.pick(('', 'ff_'))}{fn.subject}_{verb}_{obj}{suffix}"
    fn.ret_type = "void"
    fn.final = []
    dst = fn.param("uint8_t *", ("dst", "block", "out", "dest"))
    src = fn.param("const uint8_t *", ("src", "in", "pixels", "ref"))
    fn.param(fn.pick(("ptrdiff_t", "int")), ("stride", "line_size", "linesize"))
    fn.lens.append(fn.param("int", ("h", "height", "len", "w", "count")))
    fn.src = src
    fn.reader = "ffbuf"
    fn.ctx = ""
    fn.logctx = "NULL"
    fn.outputs.append(dst)


_FF_SIGS: tuple[tuple[_Sig, int], ...] = (
    (_sig_ff_decode, 3), (_sig_ff_ctx_buf, 4), (_sig_ff_gbits, 3), (_sig_ff_demux, 3),
    (_sig_ff_init, 2), (_sig_ff_dsp, 1))


def _qstate(dev: str) -> str:
    camel = _camel(dev)
    return camel if camel.startswith("VirtIO") else f"{camel}State"


def _sig_q_virtio(fn: _Fn) -> None:
    """`static void virtio_net_handle_ctrl(VirtIODevice *vdev, VirtQueue *vq)`."""
    dev = fn.pick(("virtio_net", "virtio_blk", "virtio_scsi", "virtio_gpu", "virtio_balloon",
                   "virtio_serial", "virtio_input", "virtio_crypto"))
    fn.subject = dev
    fn.name = f"{dev}_handle_{fn.noun}"
    fn.ret_type = "void"
    fn.final = []
    vdev = fn.param("VirtIODevice *", ("vdev",))
    vq = fn.param("VirtQueue *", ("vq",))
    fn.ctx = fn.local(f"{_qstate(dev)} *", ("s", "n", "vser", "g", "dev"), f"{dev.upper()}({vdev})")
    fn.local("VirtQueueElement *", ("elem",))
    fn.prologue += [(0, f"elem = virtqueue_pop({vq}, sizeof(VirtQueueElement));"),
                    (0, "if (!elem) {"), (1, "return;"), (0, "}")]
    fn.reader = "iov"
    fn.cleanup = [(0, f"virtqueue_push({vq}, elem, 0);"), (0, f"virtio_notify({vdev}, {vq});"),
                  (0, "g_free(elem);")]
    fn.const_prefix = dev.upper()


def _sig_q_mmio(fn: _Fn) -> None:
    """MemoryRegionOps callbacks: `xx_write(void *opaque, hwaddr addr, uint64_t val, unsigned)`."""
    write = fn.chance(0.55)
    middle = fn.pick(("", f"{fn.noun}_", "mmio_", "io_"))
    fn.name = f"{fn.subject}_{middle}{'write' if write else 'read'}"
    opaque = fn.param("void *", ("opaque",))
    fn.ints.append(fn.param("hwaddr", ("addr", "offset", "reg")))
    if write:
        fn.ints.append(fn.param("uint64_t", ("val", "value", "data")))
        fn.ret_type, fn.final = "void", []
        fn.reader = "mmio" if fn.params[-1][1] == "val" else "none"
    else:
        fn.ret_type = "uint64_t"
        fn.ret_var = fn.local("uint64_t", ("ret", "val", "value"), "0")
        fn.final = [f"return {fn.ret_var};"]
        fn.reader = "none"
    fn.param("unsigned", ("size",))
    fn.ctx = fn.local(f"{_qstate(fn.subject)} *", ("s", "d", "dev"), opaque)


def _sig_q_block(fn: _Fn) -> None:
    """Block drivers: `static int qcow2_read_header(BlockDriverState *bs, int64_t offset, ...)`."""
    fmt = fn.pick(_QEMU_BLOCK)
    fn.subject = fmt
    fn.name = f"{fmt}_{fn.pick(_QEMU_VERBS)}_{fn.pick(_BLOCK_OBJECTS + (fn.noun,))}"
    bs = fn.param("BlockDriverState *", ("bs",))
    fn.param("int64_t", ("offset",))
    if fn.chance(0.6):
        ctype = fn.pick(("int", "uint64_t", "unsigned int"))
        fn.lens.append(fn.param(ctype, ("bytes", "nb_sectors", "count", "n")))
    if fn.chance(0.3):
        fn.param("Error **", ("errp",))
    fn.ctx = fn.local(f"BDRV{_camel(fmt)}State *", ("s",), f"{bs}->opaque")
    fn.reader = "blk"
    fn.ret_var = fn.local("int", ("ret",))
    fn.final = [fn.pick(("return 0;", f"return {fn.ret_var};"))]


def _sig_q_vmstate(fn: _Fn) -> None:
    """`static int xx_load(QEMUFile *f, void *opaque, int version_id)`."""
    fn.name = f"{fn.subject}_{fn.pick(('load', 'post_load', 'load_' + fn.noun, 'get_' + fn.noun))}"
    fn.param("QEMUFile *", ("f",))
    opaque = fn.param("void *", ("opaque", "pv"))
    ver = fn.param("int", ("version_id",))
    fn.ctx = fn.local(f"{_qstate(fn.subject)} *", ("s", "d"), opaque)
    fn.prologue += [(0, f"if ({ver} != {fn.rng.randint(1, 4)}) {{"), (1, "return -EINVAL;"),
                    (0, "}")]
    fn.reader = "qfile"


def _sig_q_net(fn: _Fn) -> None:
    """`static ssize_t e1000_receive(NetClientState *nc, const uint8_t *buf, size_t size)`."""
    kind = fn.pick(("receive", "do_receive", f"receive_{fn.noun}", f"transmit_{fn.noun}",
                    f"send_{fn.noun}"))
    fn.name = f"{fn.subject}_{kind}"
    fn.ret_type = "ssize_t"
    nc = fn.param("NetClientState *", ("nc",))
    fn.src = fn.param("const uint8_t *", ("buf",))
    fn.lens.append(fn.param("size_t", ("size", "len")))
    fn.ctx = fn.local(f"{_qstate(fn.subject)} *", ("s", "n", "d"), f"qemu_get_nic_opaque({nc})")
    fn.reader = "qbuf"
    fn.final = [f"return {fn.lens[0]};"]


def _sig_q_vnc(fn: _Fn) -> None:
    """`static int protocol_client_msg(VncState *vs, uint8_t *data, size_t len)`."""
    fn.subject = "vnc"
    fn.name = fn.pick((f"protocol_client_{fn.noun}", f"vnc_{fn.pick(_QEMU_VERBS)}_{fn.noun}",
                       f"vnc_client_{fn.noun}"))
    fn.ctx = fn.param("VncState *", ("vs",))
    fn.src = fn.param("uint8_t *", ("data",))
    fn.lens.append(fn.param("size_t", ("len",)))
    fn.reader = "vnc"
    fn.const_prefix = "VNC"


def _sig_q_generic(fn: _Fn) -> None:
    """Device helpers: `static void e1000_set_ctrl(E1000State *s, uint32_t val)`."""
    fn.name = f"{fn.subject}_{fn.pick(_QEMU_VERBS)}_{fn.noun}"
    fn.ctx = fn.param(f"{_qstate(fn.subject)} *", ("s", "d", "dev", "n"))
    for _ in range(fn.rng.randint(1, 2)):
        ctype = fn.pick(("uint32_t", "int", "unsigned", "uint64_t", "hwaddr"))
        fn.ints.append(fn.param(ctype, ("val", "value", "idx", "index", "addr", "cmd", "qidx",
                                        "port", "n", "len")))
    fn.ret_type = fn.pick(("void", "int", "int"))
    fn.final = ["return 0;"] if fn.ret_type == "int" else []
    fn.reader = fn.pick(("mmio", "none")) if fn.params[1][1] == "val" else "none"
    if fn.chance(0.3):
        fn.src = fn.local("uint8_t *", ("p", "ptr", "buf"), f"{fn.ctx}->{fn.pick(_QEMU_NOUNS)}_buf")
        fn.reader = "qbuf"


_Q_SIGS: tuple[tuple[_Sig, int], ...] = (
    (_sig_q_virtio, 2), (_sig_q_mmio, 3), (_sig_q_block, 2), (_sig_q_vmstate, 2),
    (_sig_q_net, 2), (_sig_q_vnc, 1), (_sig_q_generic, 4))


def _choose(rng: random.Random, table: tuple[tuple[_Sig, int], ...]) -> _Sig:
    """A signature kind, by weight."""
    return rng.choices([t[0] for t in table], weights=[t[1] for t in table])[0]


# ---------------------------------------------------------------------------------------
# Filler fragments: ordinary statements around the sinks
# ---------------------------------------------------------------------------------------


def _expr(fn: _Fn, v: str) -> str:
    """A plausible integer expression over `v`."""
    mn = "FFMIN" if fn.ff else "MIN"
    mask = fn.pick(("ff", "f", "3", "7f", "ffff", "1f"))
    forms = (v, f"{v} << {fn.rng.randint(1, 4)}", f"{v} >> {fn.rng.randint(1, 8)}",
             f"{v} & 0x{mask}", f"({v} + 1) / 2", f"{v} * {fn.rng.randint(2, 16)}",
             f"{mn}({v}, {fn.pick(_SIZES)})", f"{v} - 1", f"{fn.helper()}({fn.ctx or v})",
             fn.const() if fn.const_prefix else f"{v} + 4")
    return fn.pick(forms)


def _simple(fn: _Fn) -> str:
    """One ordinary statement: a field update or a helper call."""
    v = fn.value_var()
    k = fn.rng.randrange(6)
    if fn.ret_type == "uint64_t" and k >= 4:
        return f"{fn.ret_var} = {fn.field() if fn.ctx else _expr(fn, v)};"
    if fn.ctx and k <= 1:
        return f"{fn.field()} = {_expr(fn, v)};"
    if fn.ctx and k == 2 and fn.const_prefix:
        return f"{fn.field()} {fn.pick(('|= ', '&= ~'))}{fn.const()};"
    if k == 3 and "->" not in v and "." not in v:
        return f"{v}{fn.pick(('++', '--', ' += 2', ' >>= 1', ' <<= 1'))};"
    args = ", ".join(x for x in (fn.ctx, v) if x)
    return f"{fn.helper()}({args});"


def _f_read(fn: _Fn) -> None:
    """Read one to three values from the input into fields or locals."""
    for _ in range(fn.rng.randint(1, 3)):
        if fn.ctx and fn.chance(0.5):
            fn.emit([(0, f"{fn.field()} = {fn.read_expr()};")])
        else:
            fn.new_read_var("val")


def _f_validate(fn: _Fn) -> None:
    """Reject an out-of-range value (an ordinary check, not a sink guard)."""
    v = fn.value_var()
    lim = fn.field() if fn.ctx and fn.chance(0.3) else str(fn.pick(_SIZES))
    cond = fn.pick((f"{v} > {lim}", f"{v} < 1 || {v} > {lim}", f"!{v}", f"{v} == 0",
                    f"{v} & ~0x{fn.pick(('ff', '3', '7', 'ffff'))}", f"{v} >= {lim}"))
    inner = ([(0, fn.log([v]))] if fn.chance(0.6) else []) + fn.fail("inval")
    fn.emit(fn.block(f"if ({cond})", inner))


def _f_chain(fn: _Fn) -> None:
    """An if / else if / else chain on a value."""
    v = fn.value_var()
    out: Lines = []
    for i in range(fn.rng.randint(2, 3)):
        rhs = fn.const() if fn.const_prefix else str(fn.rng.randint(0, 15))
        head = f"{'if' if i == 0 else '} else if'} ({v} == {rhs}) {{"
        out += [(0, head)] + [(1, _simple(fn)) for _ in range(fn.rng.randint(1, 2))]
    if fn.chance(0.7):
        tail = [(1, fn.log([v]))] + [(lvl + 1, t) for lvl, t in fn.fail("inval")] \
            if fn.chance(0.4) else [(1, _simple(fn))]
        out += [(0, "} else {")] + tail
    fn.emit(out + [(0, "}")])


def _f_switch(fn: _Fn) -> None:
    """A switch with two to four cases and usually a default."""
    v = fn.value_var()
    out: Lines = [(0, f"switch ({v}) {{")]
    for _ in range(fn.rng.randint(2, 4)):
        label = fn.const() if fn.const_prefix else f"0x{fn.rng.randint(0, 255):02x}"
        out += [(0, f"case {label}:")] + [(1, _simple(fn)) for _ in range(fn.rng.randint(1, 2))]
        out.append((1, "break;"))
    if fn.chance(0.8):
        out += [(0, "default:"), (1, fn.log([v]))]
        out += [(lvl + 1, t) for lvl, t in fn.fail("inval")] if fn.chance(0.5) else [(1, "break;")]
    fn.emit(out + [(0, "}")])


def _f_for(fn: _Fn) -> None:
    """A counted loop over a field array or the output pointer (never a local array)."""
    i = fn.local("int", ("i", "j", "k", "n", "x", "y", "plane", "ch"))
    if fn.ctx and fn.chance(0.6):
        noun = fn.other_noun()
        bound = f"{fn.ctx}->nb_{noun}" if fn.chance(0.6) else str(fn.pick(_SIZES))
        body = [(0, f"{fn.ctx}->{noun}[{i}] = {_expr(fn, i)};")]
        if fn.chance(0.5):
            body.append((0, _simple(fn)))
        fn.emit(fn.block(f"for ({i} = 0; {i} < {bound}; {i}++)", body, braces=True))
        return
    arr = fn.outputs[0] if fn.outputs else fn.ctx and f"{fn.ctx}->{fn.other_noun()}"
    n = fn.pick(fn.lens) if fn.lens else str(fn.pick(_SIZES))
    src = fn.src or fn.value_var()
    rhs = f"{src}[{i}]" if fn.src else _expr(fn, src)
    op = fn.pick((" ^ 0x80", " >> 1", "", " + 128", " & 0x7f")) if fn.src else ""
    target = f"{arr}[{i}]" if arr else f"{fn.value_var()}"
    body = [(0, f"{target} = {rhs}{op};" if arr else f"{fn.helper()}({i});")]
    fn.emit(fn.block(f"for ({i} = 0; {i} < {n}; {i}++)", body, braces=True))


def _f_while(fn: _Fn) -> None:
    """A while loop: bytes left in the reader, a consumed length, or a list walk."""
    k = fn.rng.randrange(3)
    if k == 0 and fn.reader == "gb2":
        body = [(0, _simple(fn)),
                (0, f"{fn.field() if fn.ctx else fn.value_var()} = {fn.read_expr()};")]
        cond = f"bytestream2_get_bytes_left(&gb) > {fn.rng.randint(0, 8)}"
        fn.emit(fn.block(f"while ({cond})", body, braces=True))
    elif k == 1 and fn.src and fn.lens:
        n = fn.lens[0]
        step = fn.local("int", ("chunk", "step", "run", "cnt", "l"))
        body = [(0, f"{step} = {'FFMIN' if fn.ff else 'MIN'}({n}, {fn.pick(_SIZES)});"),
                (0, f"{fn.helper()}({', '.join(x for x in (fn.ctx, fn.src, step) if x)});"),
                (0, f"{fn.src} += {step};"), (0, f"{n} -= {step};")]
        fn.emit(fn.block(f"while ({n} > 0)", body, braces=True))
    elif fn.ctx:
        _f_list(fn)
    else:
        v = fn.value_var()
        fn.emit(fn.block(f"while ({v} > 0)", [(0, _simple(fn)), (0, f"{v} >>= 1;")] if "->" not in v
                         else [(0, _simple(fn)), (0, f"{v}--;")], braces=True))


def _f_list(fn: _Fn) -> None:
    """Walk a linked list hanging off the context (`p->next`)."""
    noun = fn.other_noun()
    typ = f"{_camel(fn.subject)}{_camel(noun)}"
    p = fn.local(f"{typ} *", ("p", "e", "entry", "node", "cur", "req"))
    if fn.chance(0.5):
        nxt = fn.local(f"{typ} *", ("next", "tmp", "n2"))
        free = "av_free" if fn.ff else "g_free"
        body = [(0, f"{nxt} = {p}->next;"), (0, f"{free}({p});"), (0, f"{p} = {nxt};")]
        fn.emit([(0, f"{p} = {fn.ctx}->{noun}_list;")] + fn.block(f"while ({p})", body, braces=True)
                + [(0, f"{fn.ctx}->{noun}_list = NULL;")])
        return
    v = fn.value_var()
    inner = [(0, f"{p}->{fn.pick(_ATTRS)} = {_expr(fn, v)};"), (0, "break;")]
    body = fn.block(f"if ({p}->id == {v})", inner, braces=True)
    fn.emit(fn.block(f"for ({p} = {fn.ctx}->{noun}_head; {p}; {p} = {p}->next)", body, braces=True))


def _f_call(fn: _Fn) -> None:
    """A helper call, its result checked when the function returns a status."""
    args = ", ".join(x for x in (fn.ctx, fn.value_var() if fn.chance(0.6) else "") if x)
    if fn.ret_var and fn.ret_type != "uint64_t":
        fn.emit([(0, f"{fn.ret_var} = {fn.helper()}({args});")])
        fn.emit(fn.block(f"if ({fn.ret_var} < 0)", fn.fail_keep()))
    elif fn.ret_type == "int" and fn.chance(0.5):
        inner = ([(0, fn.log([]))] if fn.chance(0.5) else []) + fn.fail("io")
        fn.emit(fn.block(f"if ({fn.helper()}({args}) < 0)", inner))
    else:
        fn.emit([(0, f"{fn.helper()}({args});")])


def _f_assign(fn: _Fn) -> None:
    """One to three ordinary statements, rarely with a trailing comment."""
    for _ in range(fn.rng.randint(1, 3)):
        line = _simple(fn)
        if fn.chance(0.08):
            line += f" // {_words(fn.other_noun())}"
        fn.emit([(0, line)])


def _f_clip(fn: _Fn) -> None:
    """A derived value: clipped, conditional or rounded."""
    v = fn.value_var()
    dst = fn.local(fn.pick(("int", "unsigned", "int")),
                   ("w", "h", "shift", "step", "q", "bits", "delta", "off", "limit", "nb"))
    fn.ints.append(dst)
    clip = f"av_clip({v}, 0, {fn.pick(_SIZES)})" if fn.ff else f"MIN({v}, {fn.pick(_SIZES)})"
    rhs = fn.pick((clip, f"{v} ? {_expr(fn, v)} : {fn.rng.randint(0, 8)}",
                   f"({v} + {fn.rng.randint(1, 7)}) >> {fn.rng.randint(1, 3)}"))
    fn.emit([(0, f"{dst} = {rhs};")])


def _f_log(fn: _Fn) -> None:
    """A debug-level log line."""
    fn.emit([(0, fn.log([fn.value_var()], severe=False))])


def _f_comment(fn: _Fn) -> None:
    """A comment line, `/* */` or `//`."""
    n = _words(fn.other_noun() if fn.chance(0.5) else fn.noun)
    verb = fn.pick(_FF_VERBS if fn.ff else _QEMU_VERBS)
    fn.emit([(0, fn.pick((f"/* {verb} the {n} */", f"/* XXX: {n} may be truncated */",
                          f"// {n} is optional", f"/* FIXME: handle {n} */", "/* sanity check */",
                          f"/* default to {n} */", f"// TODO: {verb} {n} lazily",
                          f"/* skip reserved {n} bits */")))])


_FILLERS: tuple[tuple[Callable[[_Fn], None], int], ...] = (
    (_f_read, 5), (_f_validate, 4), (_f_chain, 2), (_f_switch, 2), (_f_for, 3), (_f_while, 2),
    (_f_call, 4), (_f_assign, 5), (_f_clip, 2), (_f_log, 1), (_f_comment, 2))


# ---------------------------------------------------------------------------------------
# Sinks (see the module docstring): copies into local arrays, indexed writes, allocations
# ---------------------------------------------------------------------------------------


def _array(fn: _Fn, ctype: str, cands: tuple[str, ...], zero: bool = False) -> tuple[str, str]:
    """Declare a fixed-size local array; returns (name, size as written)."""
    name = fn.fresh(cands)
    if fn.chance(0.25):  # a size macro of its own, so that one guard never covers two arrays
        unit = fn.pick(("SIZE", "LEN", "ENTRIES"))
        size = f"{fn.pick(('MAX_', ''))}{fn.subject.upper()}_{name.upper()}_{unit}"
    else:
        size = str(fn.pick(_SIZES))
    fn.locals.append((ctype, f"{name}[{size}]", "{ 0 }" if zero else None))
    return name, size


def _limit(fn: _Fn, arr: str, size: str, byte: bool) -> str:
    """An expression for the capacity of `arr` (what a guard compares with)."""
    forms = [f"{'FF_ARRAY_ELEMS' if fn.ff else 'ARRAY_SIZE'}({arr})"]
    if byte:
        forms += [f"sizeof({arr})", f"sizeof({arr})"]
    if not size.isdigit():
        forms.append(size)
    return fn.pick(forms)


def _guard(fn: _Fn, cond: str, kind: str = "inval") -> None:
    """`if (cond) { [log] leave }`."""
    inner = ([(0, fn.log([cond.split()[0]]))] if fn.chance(0.5) else []) + fn.fail(kind)
    fn.emit(fn.block(f"if ({cond})", inner))


def _decoy(fn: _Fn, n: str) -> None:
    """A check of the wrong kind before an unguarded sink (a lower bound, or zero)."""
    if fn.chance(0.3):
        _guard(fn, fn.pick((f"{n} < {fn.rng.randint(1, 8)}", f"!{n}", f"{n} == 0")))


def _s_copy(fn: _Fn, guarded: bool) -> None:
    """Copy N input bytes/elements into a local array."""
    byte = fn.chance(0.7)
    ctype = fn.pick(_BYTE_TYPES) if byte else fn.pick(_ELEM_TYPES)
    cands = ("hdr", "header", "tmp", "buf", "scratch", "key", "line", "data", "name", "iv",
             "mac", "pkt", "msg", "payload", f"{fn.noun}_buf", "tab", "block", "coeffs", "levels")
    arr, size = _array(fn, ctype, cands)
    n = fn.length_var()
    if guarded:
        cmp = fn.pick((">", ">", ">="))
        lim = _limit(fn, arr, size, byte)
        cond = fn.pick((f"{n} {cmp} {lim}", f"{n} < {fn.rng.randint(1, 4)} || {n} {cmp} {lim}",
                        f"{n} {cmp} {lim} - 1"))
        _guard(fn, cond)
    else:
        _decoy(fn, n)
    stmt = fn.copy_stmt(arr, n) if byte else None
    if stmt is None:
        i = fn.local("int", ("i", "j", "k"))
        src = f"{fn.src}[{i}]" if fn.src and fn.reader != "gb2" else fn.read_expr()
        body = [(0, f"{arr}[{i}] = {src};")]
        fn.emit(fn.block(f"for ({i} = 0; {i} < {n}; {i}++)", body, braces=True))
    else:
        fn.emit([(0, stmt)])
        if fn.reader == "blk":
            fn.emit(fn.block(f"if ({fn.ret_var} < 0)", fn.fail_keep()))
    if ctype == "char" and fn.chance(0.6):
        fn.emit([(0, f"{arr}[sizeof({arr}) - 1] = '\\0';")])
    elif fn.ctx and fn.chance(0.6):
        rd = fn.pick(("AV_RB16", "AV_RL32", "AV_RB32") if fn.ff
                     else ("ldl_le_p", "lduw_be_p", "ldl_be_p"))
        fn.emit([(0, f"{fn.field()} = {rd}({arr});" if byte else f"{fn.field()} = {arr}[0];")])


def _index_var(fn: _Fn) -> str:
    """An index from a plain integer parameter/local, or freshly read from the input."""
    plain = [v for v in fn.ints if re.fullmatch(r"[A-Za-z_]\w*", v) and v not in fn.lens]
    if plain and fn.chance(0.5):
        return fn.pick(plain)
    return fn.new_read_var("idx")


def _s_index(fn: _Fn, guarded: bool) -> None:
    """Write into a local table at an index taken from a parameter or the input."""
    ctype = fn.pick(_ELEM_TYPES)
    zero = fn.chance(0.5)
    arr, size = _array(fn, ctype, ("counts", "table", "tab", "map", "hist", "regs", "used",
                                   "lens", "codes", "bits", "ref", f"{fn.noun}_map", "slots"), zero)
    if not zero:
        fn.emit([(0, f"memset({arr}, 0, sizeof({arr}));")])
    idx = _index_var(fn)
    if guarded:
        lim = _limit(fn, arr, size, ctype in ("uint8_t",))
        _guard(fn, fn.pick((f"{idx} >= {lim}", f"{idx} >= {lim}", f"{idx} < 0 || {idx} >= {lim}")))
    else:
        _decoy(fn, idx)
    v = fn.value_var()
    write = fn.pick((f"{arr}[{idx}] = {_expr(fn, v)};", f"{arr}[{idx}]++;",
                     f"{arr}[{idx}] += {v};"))
    fn.emit([(0, write)])
    if fn.ctx and fn.chance(0.7):
        fn.emit([(0, f"{fn.helper()}({fn.ctx}, {arr});")])


def _s_alloc(fn: _Fn, guarded: bool) -> None:
    """A fallible allocation whose result is then used."""
    n = fn.length_var()
    local = not fn.ctx or fn.chance(0.6)
    if local:
        p = fn.local("uint8_t *", ("tmp", "out", "copy", "dst", "pbuf", f"{fn.noun}_data",
                                   "frame_buf", "bounce"), "NULL")
    else:
        p = f"{fn.ctx}->{fn.other_noun()}_buf"
    alloc = fn.pick(_FF_ALLOCS if fn.ff else _QEMU_ALLOCS)
    call = fn.pick((f"{alloc}({n})", f"{alloc}({n})", f"calloc({n}, 1)",
                    f"av_malloc_array({n}, sizeof(*{p}))" if fn.ff else f"g_try_malloc0({n})"))
    fn.emit([(0, f"{p} = {call};")])
    if guarded:
        inner = ([(0, fn.log([]))] if fn.chance(0.3) else []) + fn.fail("nomem")
        fn.emit(fn.block(fn.pick((f"if (!{p})", f"if ({p} == NULL)")), inner))
    use = [f"memset({p}, 0, {n});", f"{p}[0] = {_expr(fn, fn.value_var())};"]
    if fn.src:
        use += [f"memcpy({p}, {fn.src}, {n});"] * 2
    fn.emit([(0, fn.pick(use))])
    if local:
        free = "av_freep(&" + p + ")" if fn.ff else f"g_free({p})"
        if fn.goto and fn.style == "error" and fn.ctx:
            fn.emit([(0, f"{fn.ctx}->{fn.other_noun()}_data = {p};")])
            fn.cleanup.append((0, f"{free};"))
        elif fn.goto and fn.style == "shared":
            fn.cleanup.append((0, f"{free};"))
        else:
            args = ", ".join(x for x in (fn.ctx, p, n) if x)
            fn.emit([(0, f"{fn.helper()}({args});"), (0, f"{free};")])


_SINKS: tuple[Callable[[_Fn, bool], None], ...] = (_s_copy, _s_copy, _s_index, _s_alloc, _s_alloc)


def _f_fixed_copy(fn: _Fn) -> None:
    """A copy of a constant size into a local array: not a sink."""
    arr, _ = _array(fn, fn.pick(_BYTE_TYPES[:2]),
                    ("hdr", "sig", "magic", "tag", "ident", "id_buf", "uuid", "guid"))
    stmt = fn.copy_stmt(arr, f"sizeof({arr})")
    if stmt is None:
        stmt = f"memset({arr}, 0, sizeof({arr}));"
    fn.emit([(0, stmt)])
    if fn.reader == "blk":
        fn.emit(fn.block(f"if ({fn.ret_var} < 0)", fn.fail_keep()))
    magic = fn.pick(("RIFF", "FORM", "QFI", "VMDK", "ftyp", "OggS", "fLaC", "wvpk", "MThd"))
    cmp = f'memcmp({arr}, "{magic}", {fn.rng.randint(3, 4)})'
    fn.emit(fn.block(f"if ({cmp})", [(0, fn.log([]))] + fn.fail("inval")))


# ---------------------------------------------------------------------------------------
# Assembling one function
# ---------------------------------------------------------------------------------------


def _setup(rng: random.Random) -> _Fn:
    """A builder with its signature chosen and its error style decided."""
    ff = rng.random() < 0.5
    fn = _Fn(rng, ff)
    fn.subject = fn.pick(_FF_CODECS if ff else _QEMU_DEVICES)
    fn.noun = fn.pick(_FF_NOUNS if ff else _QEMU_NOUNS)
    _choose(rng, _FF_SIGS if ff else _Q_SIGS)(fn)
    fn.used.add(fn.name)
    fn.const_prefix = fn.const_prefix or fn.subject.upper()
    if fn.ret_type in ("int", "void", "ssize_t") and fn.chance(0.4 if fn.cleanup else 0.3):
        fn.goto = fn.pick(("fail", "end", "fail") if ff else ("out", "fail", "err", "out"))
        fn.style = "shared" if fn.cleanup or fn.chance(0.5) else "error"
        if fn.ret_type != "void" and not fn.ret_var:
            init = "0" if fn.chance(0.5) else None
            fn.ret_var = fn.local("int", ("ret", "err", "rc", "ret"), init, front=True)
        if not ff and fn.ctx and not fn.cleanup and fn.chance(0.5):
            fn.prologue.append((0, f"qemu_mutex_lock(&{fn.ctx}->lock);"))
            fn.cleanup.append((0, f"qemu_mutex_unlock(&{fn.ctx}->lock);"))
            fn.style = "shared"
    elif fn.ff and fn.ret_type == "int" and not fn.ret_var and fn.chance(0.5):
        fn.ret_var = fn.local("int", ("ret",), front=True)
    return fn


def _body(fn: _Fn, target: int) -> None:
    """Fill the body: filler fragments with the planned sinks at random places."""
    rng = fn.rng
    plan: list[bool] = [False] if target else []  # False: unguarded
    if (target and rng.random() < 0.3) or (not target and rng.random() < 0.7):
        plan.append(True)
        if not target and rng.random() < 0.2:
            plan.append(True)
    rng.shuffle(plan)
    due = sorted(rng.randint(0, 3) for _ in plan)
    budget = int(rng.triangular(5, 34, 8))
    fillers = [f for f, _ in _FILLERS] + [_f_fixed_copy]
    weights = [w for _, w in _FILLERS] + [1]
    done = 0
    while True:
        while plan and due[0] <= done:
            due.pop(0)
            fn.pick(_SINKS)(fn, plan.pop(0))
        if done >= 2 and fn.size() >= budget:
            break
        filler = rng.choices(fillers, weights)[0]
        filler(fn)
        done += filler is not _f_comment
    for guarded in plan:
        fn.pick(_SINKS)(fn, guarded)


def _render(fn: _Fn, static: bool, own_line_brace: bool, merge: bool) -> str:
    """The function's text."""
    params = [f"{t}{n}" if t.endswith("*") else f"{t} {n}" for t, n in fn.params] or ["void"]
    head = f"{'static ' if static else ''}{fn.ret_type} {fn.name}("
    sig = [head + ", ".join(params) + ")"]
    if len(sig[0]) > 90:
        sig, cur = [], head
        for i, prm in enumerate(params):
            piece = prm + (", " if i < len(params) - 1 else ")")
            if len(cur) + len(piece) > 90 and cur.strip():
                sig.append(cur.rstrip())
                cur = " " * len(head)
            cur += piece
        sig.append(cur)
    lines = sig + ["{"] if own_line_brace else sig[:-1] + [sig[-1] + " {"]
    lines += _declarations(fn, merge)
    if fn.locals and fn.chance(0.7):
        lines.append("")
    body: Lines = fn.prologue + fn.body
    final = [(0, s) for s in fn.final]
    if fn.goto and fn.goto_used:
        ret = [(0, f"return {fn.ret_var};")] if fn.ret_var else []
        if fn.style == "shared":
            head_final = [(0, s) for s in fn.final if not s.startswith("return ")]
            value = [s[len("return "):-1] for s in fn.final if s.startswith("return ")]
            if value and fn.ret_var and value[0] != fn.ret_var:
                head_final.append((0, f"{fn.ret_var} = {value[0]};"))
            tail = fn.cleanup or ([] if ret else [(0, "return;")])
            body += head_final + [(-1, f"{fn.goto}:")] + tail + ret
        else:
            tail = fn.cleanup or ([] if ret else [(0, "return;")])
            body += final + [(-1, f"{fn.goto}:")] + tail + ret
    else:
        body += fn.cleanup + final
    lines += ["    " * (lvl + 1) + t for lvl, t in body]
    return "\n".join(lines + ["}"])


def _declarations(fn: _Fn, merge: bool) -> list[str]:
    """Declaration lines of the locals; with `merge`, `int i, n;` style for plain scalars."""
    out: list[str] = []
    merged: dict[str, int] = {}
    for ctype, name, init in fn.locals:
        simple = init is None and "[" not in name and not ctype.endswith("*")
        if merge and simple and ctype in merged:
            out[merged[ctype]] = out[merged[ctype]][:-1] + f", {name};"
            continue
        decl = f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"
        out.append(f"    {decl}{'' if init is None else ' = ' + init};")
        if simple:
            merged[ctype] = len(out) - 1
    return out


def _one_function(rng: random.Random) -> tuple[str, str, int]:
    """(code, name, target) of one generated function, before validation."""
    target = int(rng.random() < TARGET_RATE)
    fn = _setup(rng)
    _body(fn, target)
    code = _render(fn, static=rng.random() < 0.8, own_line_brace=rng.random() < 0.85,
                   merge=rng.random() < 0.5)
    return code, fn.name, target


def _acceptable(code: str) -> bool:
    return 5 <= code.count("\n") + 1 <= 40 and cparse.parses(code)


def generate_functions(n: int, seed: int = 0) -> list[CFunction]:
    """`n` generated C functions (see the module docstring); deterministic and prefix-stable."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out: list[CFunction] = []
    retries = 0
    while len(out) < n:
        code, name, target = _one_function(rng)
        if not _acceptable(code):
            retries += 1
            if retries > 10 * (n + 10):
                raise RuntimeError("the C generator keeps producing unusable functions")
            continue
        out.append(CFunction(code, name, f"gen-{len(out)}", "generated", target))
    if retries:
        logger.debug("generator: %d retries for %d functions", retries, n)
    return out
