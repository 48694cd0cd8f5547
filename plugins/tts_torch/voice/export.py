#!/usr/bin/python3
"""export.py — turns a training checkpoint into a voice folder: model.pt (one TorchScript module,
Piper's inference signature) and voice.json (Piper's config format, phoneme_type "flite").

    /usr/bin/python3 export.py RUN_DIR/checkpoint.pt VOICE_DIR [--iterations 16] [--name NAME]

Checks the scripted module against the eager one on a test sentence before writing.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="Export the embedded voice (TorchScript + voice.json).")
    ap.add_argument("checkpoint")
    ap.add_argument("voice_dir")
    ap.add_argument("--iterations", type=int, default=16,
                    help="Griffin-Lim iterations (16: see MODEL_CARD.md for the trade-off)")
    ap.add_argument("--name", default="kiln-slt-small")
    a = ap.parse_args()
    ck = torch.load(a.checkpoint)
    id_map = ck["id_map"]
    net = M.Acoustic(len(id_map))
    net.load_state_dict(ck["model"])
    net.eval()
    stats = ck["stats"]
    voice = M.Voice(net, stats["lin_mean"], stats["lin_std"], a.iterations).eval()
    scripted = torch.jit.script(voice)
    scripted = torch.jit.freeze(scripted)

    # The same ids through the eager and the scripted module: identical audio.
    ids = [id_map["^"], id_map["_"]]
    for s in ["pau", "hh", "ax0", "l", "ow1", " ", "w", "er1", "l", "d", ".", "pau"]:
        ids += [id_map[s], id_map["_"]]
    ids.append(id_map["$"])
    text = torch.tensor([ids], dtype=torch.long)
    args = (text, torch.tensor([len(ids)]), torch.tensor([0]), torch.tensor([0.667]),
            torch.tensor([1.0]), torch.tensor([0.8]))
    with torch.inference_mode():
        eager = voice(*args)[0]
        jit = scripted(*args)[0]
    if eager.shape != jit.shape or (eager - jit).abs().max() > 1e-4:
        sys.exit(f"export: scripted output differs from eager ({tuple(eager.shape)} vs {tuple(jit.shape)})")

    os.makedirs(a.voice_dir, exist_ok=True)
    model_path = os.path.join(a.voice_dir, "model.pt")
    scripted.save(model_path)
    config = {
        "dataset": a.name,
        "audio": {"sample_rate": M.SAMPLE_RATE, "quality": "low"},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_type": "flite",
        "phoneme_map": {},
        "phoneme_id_map": {k: [v] for k, v in sorted(id_map.items(), key=lambda kv: kv[1])},
        "num_symbols": len(id_map),
        "num_speakers": 1,
        "speaker_id_map": {},
        "piper_version": "1.0.0",
        "kiln": {
            "name": a.name,
            "description": "small neural voice distilled from flite cmu_us_slt",
            "model_card": "MODEL_CARD.md",
            "parameters": ck["params"],
            "training_steps": ck["step"],
            "training_minutes": round(ck["trained_s"] / 60, 1),
            "vocoder": f"fast Griffin-Lim, {a.iterations} iterations",
        },
    }
    with open(os.path.join(a.voice_dir, "voice.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    size = os.path.getsize(model_path) / 1e6
    print(f"export: {model_path} ({size:.1f} MB), {len(id_map)} symbols, step {ck['step']}, "
          f"{ck['trained_s'] / 60:.0f} min trained; audio for the test sentence: "
          f"{jit.shape[-1] / M.SAMPLE_RATE:.2f} s")


if __name__ == "__main__":
    main()
