"""One tokenizer interface, three kinds: raw bytes, a byte-level BPE trained here, published tiktoken BPEs.

Every kind carries fineforge's special tokens (end of document, chat turns, tools). `encode` treats its
input as plain text: special-token strings inside user text stay text. Trusted template text with
special-token strings in it goes through `encode_with_special`; a single special token through
`encode_special`.

    tok = load_tokenizer("o200k_base", "/path/to/vocab/files")   # or "bytes", "gpt2", "x/tokenizer.json"
    ids = tok.encode("hello") + [tok.eot_id]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# Special tokens (design.md): end of document, chat turns, search tool, code tool, tool output.
EOT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IM_SEP = "<|im_sep|>"
SEARCH_START = "<SEARCH_START>"
SEARCH_END = "<SEARCH_END>"
CODE_START = "<CODE_START>"
CODE_END = "<CODE_END>"
OUTPUT_START = "<OUTPUT_START>"
OUTPUT_END = "<OUTPUT_END>"
SPECIAL_TOKENS: tuple[str, ...] = (
    EOT, IM_START, IM_END, IM_SEP, SEARCH_START, SEARCH_END, CODE_START, CODE_END, OUTPUT_START, OUTPUT_END,
)
# The non-EOT special tokens, in the order they get ids after a published encoding's own tokens.
ADDED_SPECIAL_TOKENS: tuple[str, ...] = SPECIAL_TOKENS[1:]

BYTES_SPEC = "bytes"
TOKENIZER_DIR_ENV = "FINEFORGE_TOKENIZER_DIR"
TIKTOKEN_CACHE_ENV = "TIKTOKEN_CACHE_DIR"



@dataclass(frozen=True)
class VocabFile:
    """One published vocabulary file: where tiktoken would download it (its cache key is sha1(url)), and
    the sha256 tiktoken pins for it (checked here first, so a bad file never makes tiktoken go online)."""

    url: str
    sha256: str


# Published encodings and their files; then the id of <|im_start|> (<|im_end|>, <|im_sep|> and the tool
# tokens follow): OpenAI's ChatML ids for cl100k_base, design.md's for o200k_base, after the 50,257 of GPT-2.
_OPENAI_BLOB = "https://openaipublic.blob.core.windows.net"
PUBLISHED_FILES: dict[str, dict[str, VocabFile]] = {
    "gpt2": {
        "vocab.bpe": VocabFile(
            f"{_OPENAI_BLOB}/gpt-2/encodings/main/vocab.bpe",
            "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        ),
        "encoder.json": VocabFile(
            f"{_OPENAI_BLOB}/gpt-2/encodings/main/encoder.json",
            "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        ),
    },
    "cl100k_base": {
        "cl100k_base.tiktoken": VocabFile(
            f"{_OPENAI_BLOB}/encodings/cl100k_base.tiktoken",
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        )
    },
    "o200k_base": {
        "o200k_base.tiktoken": VocabFile(
            f"{_OPENAI_BLOB}/encodings/o200k_base.tiktoken",
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        )
    },
}
FIRST_ADDED_ID: dict[str, int] = {"gpt2": 50257, "cl100k_base": 100264, "o200k_base": 200264}

# GPT-4's (cl100k_base) pre-tokenisation regex, without possessive quantifiers for the Oniguruma engine.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded or used: unknown spec, missing vocabulary file, unknown token."""


class Tokenizer(ABC):
    """Text <-> token ids, with fineforge's special tokens."""

    name: str
    special_tokens: dict[str, int]

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids a model must embed (largest id + 1)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token strings in the text are encoded as text."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text (special tokens rendered as their strings, broken UTF-8 replaced)."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of several texts."""
        return [self.encode(text) for text in texts]

    def encode_batch_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode_batch` as uint32 arrays (what token shards are made of)."""
        import numpy as np

        return [np.asarray(ids, dtype=np.uint32) for ids in self.encode_batch(texts)]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token's string, UTF-8 encoded)."""
        return self.decode([token_id]).encode("utf-8")

    @property
    def eot_id(self) -> int:
        """The end-of-document token, appended after every document."""
        return self.special_tokens[EOT]

    def encode_special(self, token: str) -> int:
        """The id of one special token, e.g. `<|im_start|>`."""
        try:
            return self.special_tokens[token]
        except KeyError:
            known = sorted(self.special_tokens)
            raise TokenizerError(f"{token!r} is not a special token of {self.name} ({known})") from None

    def encode_with_special(self, text: str) -> list[int]:
        """Trusted template text: special-token strings become their ids, the rest is encoded as text."""
        ids: list[int] = []
        for piece in self._special_pattern().split(text):
            if piece in self.special_tokens:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode(piece))
        return ids

    def _special_pattern(self) -> re.Pattern:
        names = sorted(self.special_tokens, key=len, reverse=True)
        return re.compile("(" + "|".join(re.escape(n) for n in names) + ")")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """Ids 0-255 are the byte values, the special tokens follow; any text round-trips exactly."""

    def __init__(self) -> None:
        self.name = BYTES_SPEC
        self.special_tokens = {token: 256 + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._special_by_id = {i: t for t, i in self.special_tokens.items()}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        out, run = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            if i not in self._special_by_id:
                raise TokenizerError(f"id {i} is outside the bytes vocabulary ({self.vocab_size})")
            out.append(self._special_by_id[i])
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([token_id]) if token_id < 256 else self.decode([token_id]).encode("utf-8")


class TiktokenTokenizer(Tokenizer):
    """A published encoding (gpt2, cl100k_base, o200k_base) extended with fineforge's special tokens."""

    def __init__(self, encoding_name: str, vocab_dir: str | Path, num_threads: int = 1) -> None:
        import tiktoken
        from tiktoken_ext import openai_public

        if encoding_name not in PUBLISHED_FILES:
            raise TokenizerError(f"unknown published encoding {encoding_name!r} (known: {sorted(PUBLISHED_FILES)})")
        with _offline_tiktoken_cache(encoding_name, Path(vocab_dir)):
            base = openai_public.ENCODING_CONSTRUCTORS[encoding_name]()
        first = FIRST_ADDED_ID[encoding_name]
        added = {token: first + i for i, token in enumerate(ADDED_SPECIAL_TOKENS)}
        clash = set(added.values()) & (set(base["mergeable_ranks"].values()) | set(base["special_tokens"].values()))
        if clash:
            raise TokenizerError(f"{encoding_name}: fineforge special ids {sorted(clash)} are already taken")
        special = {**base["special_tokens"], **added}
        self._encoding = tiktoken.Encoding(
            name=f"fineforge-{encoding_name}",
            pat_str=base["pat_str"],
            mergeable_ranks=base["mergeable_ranks"],
            special_tokens=special,
        )
        self.name = encoding_name
        self.special_tokens = {token: special[token] for token in SPECIAL_TOKENS}
        self._num_threads = num_threads

    @property
    def vocab_size(self) -> int:
        return self._encoding.max_token_value + 1

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._encoding.encode_ordinary_batch(list(texts), num_threads=self._num_threads)

    def encode_batch_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        # tiktoken's numpy path: the ids of `encode_ordinary` (no special token is allowed, and none raises),
        # without building a Python int per token; one thread, as the tokens stage runs one task per core.
        return [self._encoding.encode_to_numpy(text, disallowed_special=()) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self._encoding.decode([int(i) for i in ids])

    def token_bytes(self, token_id: int) -> bytes:
        return self._encoding.decode_single_token_bytes(int(token_id))


class BPETokenizer(Tokenizer):
    """A byte-level BPE trained with HuggingFace `tokenizers`, loaded from its JSON file."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file {path} does not exist")
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise TokenizerError(f"{path} is not a HuggingFace tokenizer JSON file: {exc}") from exc
        self._tok.encode_special_tokens = True  # user text never produces special ids
        missing = [t for t in SPECIAL_TOKENS if self._tok.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"{path} lacks fineforge's special tokens {missing}; train it with train_bpe")
        self.name = str(path.resolve())
        self.special_tokens = {t: self._tok.token_to_id(t) for t in SPECIAL_TOKENS}

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # `encode_batch_fast` gives the same ids without computing character offsets (unused here).
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


@dataclass
class BPETrainingConfig:
    """How to train a byte-level BPE."""

    vocab_size: int = 8192
    min_frequency: int = 2
    split_pattern: str = GPT4_SPLIT_PATTERN


def train_bpe(texts: Iterable[str], output_path: str | Path, config: BPETrainingConfig | None = None) -> BPETokenizer:
    """Train a byte-level BPE (GPT-4 pre-tokenisation, fineforge's special tokens) and save it as JSON."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    config = config or BPETrainingConfig()
    smallest = 256 + len(SPECIAL_TOKENS)
    if config.vocab_size < smallest:
        raise TokenizerError(f"vocab_size {config.vocab_size} is below the {smallest} bytes + special tokens")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(config.split_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, output_path)
    log.info("trained BPE with %d tokens -> %s", tok.get_vocab_size(), output_path)
    return BPETokenizer(output_path)


def default_vocab_dir() -> str | None:
    """The folder of published vocabulary files named by $FINEFORGE_TOKENIZER_DIR, if set."""
    return os.environ.get(TOKENIZER_DIR_ENV)


def load_tokenizer(spec: str, vocab_dir: str | Path | None = None) -> Tokenizer:
    """A tokenizer from its spec: "bytes", "gpt2", "cl100k_base", "o200k_base", or a trained JSON file's path.

    Published encodings read their vocabulary files from `vocab_dir` (default $FINEFORGE_TOKENIZER_DIR),
    never from the network.
    """
    if spec == BYTES_SPEC:
        return ByteTokenizer()
    if spec in PUBLISHED_FILES:
        vocab_dir = vocab_dir or default_vocab_dir()
        if not vocab_dir:
            raise TokenizerError(f"{spec} needs a folder of vocabulary files: vocab_dir or ${TOKENIZER_DIR_ENV}")
        return TiktokenTokenizer(spec, vocab_dir)
    if spec.endswith(".json") or Path(spec).is_file():
        return BPETokenizer(spec)
    raise TokenizerError(
        f"unknown tokenizer {spec!r}: expected {BYTES_SPEC!r}, one of {sorted(PUBLISHED_FILES)}, or a .json file"
    )


_ENV_LOCK = threading.Lock()


@contextmanager
def _offline_tiktoken_cache(encoding_name: str, vocab_dir: Path) -> Iterator[None]:
    """Point tiktoken's cache at links to the local vocabulary files, named as tiktoken expects (sha1 of URL)."""
    vocab_dir = vocab_dir.resolve()
    cache = Path(tempfile.gettempdir()) / "fineforge-tiktoken" / hashlib.sha1(str(vocab_dir).encode()).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    for filename, vocab_file in PUBLISHED_FILES[encoding_name].items():
        source = vocab_dir / filename
        if not source.is_file():
            raise TokenizerError(f"{encoding_name}: vocabulary file {source} is missing")
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if digest != vocab_file.sha256:
            raise TokenizerError(f"{source}: sha256 {digest} is not the published {vocab_file.sha256}")
        link = cache / hashlib.sha1(vocab_file.url.encode()).hexdigest()
        if not (link.is_symlink() and link.resolve() == source):
            tmp = link.with_name(f"{link.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(source)
            os.replace(tmp, link)
    with _ENV_LOCK:
        before = os.environ.get(TIKTOKEN_CACHE_ENV)
        os.environ[TIKTOKEN_CACHE_ENV] = str(cache)
        try:
            yield
        except (ValueError, OSError) as exc:
            message = f"{encoding_name}: vocabulary files in {vocab_dir} failed tiktoken's check: {exc}"
            raise TokenizerError(message) from exc
        finally:
            if before is None:
                os.environ.pop(TIKTOKEN_CACHE_ENV, None)
            else:
                os.environ[TIKTOKEN_CACHE_ENV] = before


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """What makes two tokenizers encode alike, hashed: a published encoding's name (a trained one's file
    content, wherever that file lies), the vocabulary size and the special token ids."""
    if isinstance(tokenizer, BPETokenizer):
        what = "file:" + hashlib.sha256(Path(tokenizer.name).read_bytes()).hexdigest()
    else:
        what = tokenizer.name
    identity = json.dumps([what, tokenizer.vocab_size, sorted(tokenizer.special_tokens.items())])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def tokenizer_record(spec: str, tokenizer: Tokenizer) -> dict:
    """How checkpoints and data sets record their tokenizer: spec, name, vocabulary size, fingerprint."""
    return {"spec": spec, "name": tokenizer.name, "vocab_size": tokenizer.vocab_size,
            "fingerprint": tokenizer_fingerprint(tokenizer)}
