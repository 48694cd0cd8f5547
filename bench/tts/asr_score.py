#!/usr/bin/env python3
"""asr_score.py SENTENCES DIR — intelligibility of DIR/s<i>.wav (line i of SENTENCES, 1-based),
measured with pocketsphinx (Debian pocketsphinx + pocketsphinx-en-us):

  closed set: a JSGF grammar whose only sentences are the test sentences; a sentence counts
              when the recognizer returns exactly it;
  word error rate: a JSGF word loop over the sentences' vocabulary (any order, any length), so
              every word must be heard; Levenshtein distance over words / reference words.

Prints one JSON object: {"recognized", "sentences", "wer", "errors", "words", "hypotheses"}.
"""
import json
import os
import subprocess
import sys
import tempfile

MODEL = "/usr/share/pocketsphinx/model/en-us"


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            keep = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1]))
            diag = keep
    return row[len(b)]


def recognize(raw, grammar):
    out = subprocess.run(["pocketsphinx_continuous", "-infile", raw, "-hmm", f"{MODEL}/en-us",
                          "-jsgf", grammar, "-dict", f"{MODEL}/cmudict-en-us.dict"],
                         capture_output=True, text=True).stdout
    return " ".join(out.split())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sentences = [l.strip().lower() for l in open(sys.argv[1]) if l.strip()]
    wav_dir = sys.argv[2]
    work = tempfile.mkdtemp(prefix="kiln-asr-")
    closed = os.path.join(work, "closed.gram")
    with open(closed, "w") as f:
        f.write("#JSGF V1.0;\ngrammar closed;\npublic <s> = "
                + " | ".join(f"( {s} )" for s in sentences) + ";\n")
    loop = os.path.join(work, "loop.gram")
    vocab = sorted({w for s in sentences for w in s.split()})
    with open(loop, "w") as f:
        f.write("#JSGF V1.0;\ngrammar loop;\npublic <s> = <w>+;\n<w> = " + " | ".join(vocab) + ";\n")
    recognized = errors = words = 0
    hyps = []
    for i, ref in enumerate(sentences, 1):
        wav = os.path.join(wav_dir, f"s{i}.wav")
        words += len(ref.split())
        if not os.path.exists(wav):
            errors += len(ref.split())
            hyps.append(None)
            continue
        raw = os.path.join(work, "x.raw")
        subprocess.run(["sox", wav, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer",
                        "-t", "raw", raw], check=True, capture_output=True)
        if recognize(raw, closed) == ref:
            recognized += 1
        hyp = recognize(raw, loop)
        hyps.append(hyp)
        errors += edit_distance(ref.split(), hyp.split())
    print(json.dumps({"recognized": recognized, "sentences": len(sentences),
                      "wer": round(errors / max(words, 1), 3), "errors": errors, "words": words,
                      "hypotheses": hyps}))


if __name__ == "__main__":
    main()
