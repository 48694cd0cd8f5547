#!/usr/bin/python3
"""make_corpus.py — writes the training sentences of the embedded voice (corpus.txt).

Deterministic: the same Python (Debian 12's /usr/bin/python3, 3.11) and the same seed give the
same file. Two sources:
  * ordinary English prose: sentences from the docstrings of Python's standard library (PSF
    licence), kept only when every word is in CMUdict (pocketsphinx-en-us) so that the teacher
    reads words, not letter-to-sound guesses; code-like sentences are dropped;
  * the domain: generated roasting sentences with numbers, times, temperatures, units and
    abbreviations, written as people type them ("9:12", "205 °C", "Dr.") so that the voice learns
    what the front end's normalizer turns them into.
The Harvard sentences used to score the voice (fixtures/speech) are never included.
Usage: /usr/bin/python3 make_corpus.py [--count N] [--seed S] [--exclude FILE] > corpus.txt
"""
import argparse
import importlib
import inspect
import pkgutil
import random
import re
import sys
import warnings

CMUDICT = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"


def load_vocab():
    vocab = set()
    with open(CMUDICT, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if "(" in w:
                w = w[: w.index("(")]
            vocab.add(w.lower())
    return vocab


SENT_RE = re.compile(r"[A-Z][A-Za-z ,;'\-]+[.?!]")
CODEY = re.compile(r"[a-z][A-Z]|[A-Z]{3,}|--|''|\b(?:args?|kwargs|str|int|bool|dict|tuple|"
                   r"func|param|attr|obj|cls|self|repr|len|iter|init|utf|ascii|lst|buf|"
                   r"fd|fp|msg|ctx|env|cfg|sys|tmp|impl)\b")


def prose(vocab, exclude):
    warnings.simplefilter("ignore")
    names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_"))
    skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test",
            "lib2to3", "pydoc_data", "ensurepip", "venv", "xxlimited", "xxsubtype"}
    seen = set()
    out = []
    for name in names:
        if name in skip or "." in name:
            continue
        try:
            mod = importlib.import_module(name)
        except BaseException:
            continue
        f = str(getattr(mod, "__file__", "") or "")
        if f and (not f.startswith("/usr/lib/python3.") or "-packages" in f):
            continue  # only the standard library: installed packages differ between machines
        docs = [inspect.getdoc(mod) or ""]
        for _, obj in sorted(vars(mod).items(), key=lambda kv: kv[0]):
            if inspect.isfunction(obj) or inspect.isclass(obj):
                docs.append(inspect.getdoc(obj) or "")
                if inspect.isclass(obj):
                    for _, m in sorted(vars(obj).items(), key=lambda kv: kv[0]):
                        if inspect.isfunction(m):
                            docs.append(inspect.getdoc(m) or "")
        for d in docs:
            text = " ".join(d.split())
            for s in SENT_RE.findall(text):
                s = s.strip()
                words = re.findall(r"[A-Za-z']+", s)
                if not 4 <= len(words) <= 22 or CODEY.search(s):
                    continue
                if any(w.lower().strip("'") not in vocab for w in words):
                    continue
                key = s.lower()
                if key in seen or key.rstrip(".?!") in exclude:
                    continue
                seen.add(key)
                out.append(s)
    return out


def domain(rng, n):
    minutes = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
               "eleven", "twelve", "thirteen", "fourteen"]
    origins = ["Ethiopia", "Kenya", "Colombia", "Brazil", "Guatemala", "Sumatra", "Rwanda",
               "Honduras", "Peru", "Yemen", "Panama", "Burundi", "Costa Rica", "Java"]
    events = ["first crack", "second crack", "dry end", "the turning point", "drop", "charge"]
    tpl = [
        lambda: f"First crack at {rng.randint(6, 11)}:{rng.randint(0, 59):02d}.",
        lambda: f"{rng.choice(events).capitalize()} at {rng.choice(minutes)} minutes "
                f"{rng.choice(minutes)}.",
        lambda: f"Bean temperature is {rng.randint(90, 230)} °C.",
        lambda: f"The environment temperature reached {rng.randint(150, 260)} °C at "
                f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}.",
        lambda: f"Rate of rise is {rng.randint(2, 25)}.{rng.randint(0, 9)} degrees per minute.",
        lambda: f"Charge {rng.randint(200, 1000)} g of {rng.choice(origins)} at "
                f"{rng.randint(180, 240)} °C.",
        lambda: f"Development time ratio was {rng.randint(12, 28)}%.",
        lambda: f"Drop at {rng.randint(9, 15)}:{rng.randint(0, 59):02d}, weight loss "
                f"{rng.randint(11, 18)}.{rng.randint(0, 9)}%.",
        lambda: f"Is the drum at {rng.randint(150, 250)} degrees yet?",
        lambda: f"Set the fan to {rng.randint(1, 12)} and the heater to P{rng.randint(1, 9)}.",
        lambda: f"Roast {rng.randint(1, 999)} of {rng.randint(1000, 2030)} passed quality control.",
        lambda: f"Dr. {rng.choice(['Smith', 'Garcia', 'Nguyen', 'Okafor', 'Jones'])} approved "
                f"batch {rng.randint(1, 400)} on {rng.choice(['Monday', 'Friday', 'June 3', 'May 21'])}.",
        lambda: f"The {rng.choice(origins)} lot lost {rng.randint(10, 20)} percent of its weight.",
        lambda: f"Warning: the bean probe read {rng.randint(20, 60)} °F below the target.",
        lambda: f"Mission {rng.randint(1, 99)} is waiting for an approver.",
        lambda: f"Turning point at {rng.randint(0, 2)}:{rng.randint(0, 59):02d} near "
                f"{rng.randint(80, 120)} degrees.",
        lambda: f"The session ended after {rng.randint(2, 60)} s of silence.",
        lambda: f"It is {rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(['am', 'pm'])} "
                f"and the roaster is {rng.choice(['warming up', 'idle', 'cooling', 'ready'])}.",
    ]
    return [rng.choice(tpl)() for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--domain-share", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exclude", action="append", default=[])
    a = ap.parse_args()
    exclude = set()
    for path in a.exclude:
        with open(path, encoding="utf-8") as f:
            exclude |= {l.strip().lower().rstrip(".?!") for l in f if l.strip()}
    rng = random.Random(a.seed)
    p = prose(load_vocab(), exclude)
    n_domain = int(a.count * a.domain_share)
    rng.shuffle(p)
    p = p[: a.count - n_domain]
    lines = p + domain(rng, n_domain)
    rng.shuffle(lines)
    print(f"make_corpus: {len(p)} prose + {n_domain} domain sentences", file=sys.stderr)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
