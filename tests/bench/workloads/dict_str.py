"""dict- and str-heavy code: tokenise a synthetic corpus, count words and
bigrams in dicts, build strings with format/join/replace, and a small
template engine. Much of the time is inside C methods of str and dict.
"""
import os
import random

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
DOCS = max(20, int(2600 * SCALE))

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "xu"]
TEMPLATE = "Dear {name}, your order #{order} of {count} {item}s ships on {day}."


def make_corpus(rng, docs):
    out = []
    for _ in range(docs):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(80)]
        out.append(" ".join(words).capitalize() + ".")
    return out


def tokenize(doc):
    return doc.lower().replace(".", " ").replace(",", " ").split()


def count(corpus):
    words = {}
    bigrams = {}
    for doc in corpus:
        toks = tokenize(doc)
        for w in toks:
            words[w] = words.get(w, 0) + 1
        for a, b in zip(toks, toks[1:]):
            key = a + "_" + b
            if key in bigrams:
                bigrams[key] += 1
            else:
                bigrams[key] = 1
    return words, bigrams


def render(words):
    lines = []
    for i, (w, n) in enumerate(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:300]):
        lines.append(TEMPLATE.format(name=w.title(), order=1000 + i, count=n,
                                     item=w[::-1], day=("Mon", "Tue", "Wed")[i % 3]))
    return "\n".join(lines)


def main():
    rng = random.Random(42)
    corpus = make_corpus(rng, DOCS)
    words, bigrams = count(corpus)
    text = render(words)
    checksum = sum(ord(c) for c in text[:5000])
    upper = sum(1 for line in text.splitlines() if line.upper().startswith("DEAR K"))
    return len(words), len(bigrams), checksum, upper


if __name__ == "__main__":
    import _timing
    _timing.run(main)
