#!/usr/bin/python3
"""train.py — trains the embedded voice on the teacher's corpus (see README.md beside this file).

    /usr/bin/python3 train.py --data DATA_DIR --out RUN_DIR [--minutes M] [--threads N]

DATA_DIR is what kiln_tts_teacher wrote (wav/, utterances-*.jsonl, inventory.json). Training
resumes from RUN_DIR/checkpoint.pt when it exists, saves it every few minutes and on SIGTERM or
SIGINT, and stops after M minutes of this run. Progress goes to stderr and RUN_DIR/train.log.
CPU only (Debian's python3-torch).
"""
import argparse
import glob
import json
import math
import os
import random
import signal
import sys
import time
import wave

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402


def log(run_dir, msg):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, file=sys.stderr, flush=True)
    with open(os.path.join(run_dir, "train.log"), "a") as f:
        f.write(line + "\n")


def symbol_map(inventory):
    ids = {"_": 0, "^": 1, "$": 2}
    for s in inventory:
        ids[s] = len(ids)
    return ids


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        data = w.readframes(w.getnframes())
        rate = w.getframerate()
    audio = torch.frombuffer(bytearray(data), dtype=torch.int16).to(torch.float32) / 32768.0
    return audio, rate


def utterance_ids_and_durations(u, id_map, n_frames):
    """Piper's layout (^ _ s1 _ s2 _ ... $) with a frame count per id; the teacher's phone end
    times become frame boundaries, and the last timed symbol absorbs any rounding remainder."""
    ids = [id_map["^"], id_map["_"]]
    durs = [0, 0]
    prev_boundary = 0
    last_timed = -1
    for sym, end in zip(u["symbols"], u["ends"]):
        ids.append(id_map[sym])
        if end >= 0:
            b = min(int(round(end * M.SAMPLE_RATE / M.HOP)), n_frames)
            durs.append(max(b - prev_boundary, 0))
            prev_boundary = max(prev_boundary, b)
            last_timed = len(durs) - 1
        else:
            durs.append(0)
        ids.append(id_map["_"])
        durs.append(0)
    ids.append(id_map["$"])
    durs.append(0)
    durs[last_timed] += n_frames - sum(durs)
    if durs[last_timed] < 0:
        return None, None
    return ids, durs


def load_data(data_dir, cache_path):
    if os.path.exists(cache_path):
        return torch.load(cache_path)
    inventory = json.load(open(os.path.join(data_dir, "inventory.json")))
    id_map = symbol_map(inventory)
    utts = []
    for path in sorted(glob.glob(os.path.join(data_dir, "utterances-*.jsonl"))):
        with open(path) as f:
            utts += [json.loads(line) for line in f if line.strip()]
    utts.sort(key=lambda u: u["id"])
    mel_basis = M.mel_filterbank()
    window = torch.hann_window(M.WIN)
    items = []
    for i, u in enumerate(utts):
        audio, rate = read_wav(os.path.join(data_dir, "wav", u["id"] + ".wav"))
        assert rate == M.SAMPLE_RATE, f"{u['id']}: {rate} Hz, expected {M.SAMPLE_RATE}"
        mel, lin = M.spectra(audio, mel_basis, window)
        ids, durs = utterance_ids_and_durations(u, id_map, mel.size(1))
        if ids is None:
            continue
        items.append({"id": u["id"], "ids": torch.tensor(ids, dtype=torch.long),
                      "durs": torch.tensor(durs, dtype=torch.long),
                      "mel": mel.to(torch.float16), "lin": lin.to(torch.float16)})
        if (i + 1) % 500 == 0:
            print(f"features: {i + 1}/{len(utts)}", file=sys.stderr, flush=True)
    mel_all = torch.cat([it["mel"].float() for it in items], 1)
    lin_all = torch.cat([it["lin"].float() for it in items], 1)
    stats = {"mel_mean": mel_all.mean(1), "mel_std": mel_all.std(1).clamp(min=0.1),
             "lin_mean": lin_all.mean(1), "lin_std": lin_all.std(1).clamp(min=0.1)}
    data = {"items": items, "stats": stats, "id_map": id_map, "inventory": inventory}
    torch.save(data, cache_path)
    return data


def batches(items, max_frames, rng):
    order = sorted(range(len(items)), key=lambda i: items[i]["mel"].size(1) + rng.random() * 40)
    out, cur, cur_max = [], [], 0
    for i in order:
        f = items[i]["mel"].size(1)
        if cur and max(cur_max, f) * (len(cur) + 1) > max_frames:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, f)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def collate(items, idx, stats):
    b = [items[i] for i in idx]
    T = max(it["ids"].size(0) for it in b)
    Fr = max(it["mel"].size(1) for it in b)
    ids = torch.zeros(len(b), T, dtype=torch.long)
    durs = torch.zeros(len(b), T, dtype=torch.long)
    id_mask = torch.zeros(len(b), 1, T)
    mel = torch.zeros(len(b), M.N_MELS, Fr)
    lin = torch.zeros(len(b), M.N_LINEAR, Fr)
    fmask = torch.zeros(len(b), 1, Fr)
    for k, it in enumerate(b):
        t, f = it["ids"].size(0), it["mel"].size(1)
        ids[k, :t] = it["ids"]
        durs[k, :t] = it["durs"]
        id_mask[k, 0, :t] = 1
        mel[k, :, :f] = (it["mel"].float() - stats["mel_mean"][:, None]) / stats["mel_std"][:, None]
        lin[k, :, :f] = (it["lin"].float() - stats["lin_mean"][:, None]) / stats["lin_std"][:, None]
        fmask[k, 0, :f] = 1
    return ids, durs, id_mask, mel, lin, fmask


def step_losses(net, batch):
    ids, durs, id_mask, mel, lin, fmask = batch
    enc, logd = net.encode(ids, id_mask)
    frames = []
    Fr = mel.size(2)
    for k in range(ids.size(0)):
        x = M.regulate(enc[k], durs[k])
        frames.append(F.pad(x, (0, Fr - x.size(1))))
    frames = torch.stack(frames)
    mel_hat, lin_hat = net.decode(frames, fmask)
    n_frames = fmask.sum()
    mel_loss = ((mel_hat - mel).abs() * fmask).sum() / (n_frames * M.N_MELS)
    lin_loss = ((lin_hat - lin).abs() * fmask).sum() / (n_frames * M.N_LINEAR)
    target = torch.log(durs.float() + 1.0)
    dmask = id_mask.squeeze(1)
    dur_loss = (((logd - target) ** 2) * dmask).sum() / dmask.sum()
    return mel_loss, lin_loss, dur_loss


def main():
    ap = argparse.ArgumentParser(description="Train the embedded kiln voice (CPU).")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-frames", type=int, default=5000)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)

    data = load_data(a.data, os.path.join(a.out, "features.pt"))
    items, stats = data["items"], data["stats"]
    held = items[:40]
    train = items[40:]
    total_frames = sum(it["mel"].size(1) for it in train)
    log(a.out, f"data: {len(train)} training utterances ({total_frames * M.HOP / M.SAMPLE_RATE / 3600:.2f} h), "
               f"{len(held)} held out, {len(data['id_map'])} symbols")

    net = M.Acoustic(len(data["id_map"]))
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=1e-6)
    ckpt_path = os.path.join(a.out, "checkpoint.pt")
    step, epoch, trained_s = 0, 0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, trained_s = ck["step"], ck["epoch"], ck["trained_s"]
        log(a.out, f"resumed at step {step}, epoch {epoch}, {trained_s / 60:.1f} min trained")
    params = sum(p.numel() for p in net.parameters())
    log(a.out, f"model: {params / 1e6:.2f} M parameters, {a.threads} threads, {a.minutes:.0f} min budget")

    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True
        log(a.out, f"signal {signum}: saving and stopping after this step")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def save():
        tmp = ckpt_path + ".tmp"
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "epoch": epoch, "trained_s": trained_s, "stats": stats,
                    "id_map": data["id_map"], "inventory": data["inventory"],
                    "params": params}, tmp)
        os.replace(tmp, ckpt_path)

    def validate():
        net.eval()
        with torch.no_grad():
            tot = [0.0, 0.0, 0.0]
            for idx in batches(held, a.batch_frames, random.Random(0)):
                ls = step_losses(net, collate(held, idx, stats))
                for k in range(3):
                    tot[k] += float(ls[k]) * len(idx)
        net.train()
        return [t / len(held) for t in tot]

    run_start = time.time()
    base_trained = trained_s
    start = run_start
    last_save = start
    last_log = start
    run_steps = 0
    agg = [0.0, 0.0, 0.0]
    net.train()
    while not stop["now"]:
        for idx in batches(train, a.batch_frames, rng):
            warm = min(1.0, (step + 1) / 400)
            lr = a.lr * warm * (0.5 ** (step / 12000))
            for g in opt.param_groups:
                g["lr"] = lr
            mel_l, lin_l, dur_l = step_losses(net, collate(train, idx, stats))
            loss = mel_l + lin_l + 0.5 * dur_l
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            run_steps += 1
            for k, v in enumerate((mel_l, lin_l, dur_l)):
                agg[k] += float(v)
            now = time.time()
            if now - last_log >= 60:
                n = max(run_steps, 1)
                elapsed = now - start
                log(a.out, f"step {step} epoch {epoch} lr {lr:.2e} mel {agg[0] / n:.3f} "
                           f"lin {agg[1] / n:.3f} dur {agg[2] / n:.3f} | {run_steps / elapsed:.2f} steps/s, "
                           f"{(now - run_start) / 60:.1f}/{a.minutes:.0f} min of this run")
                agg = [0.0, 0.0, 0.0]
                run_steps = 0
                last_log = now
                start = now
            trained_s = base_trained + (now - run_start)
            if now - last_save >= a.save_minutes * 60:
                v = validate()
                log(a.out, f"held-out: mel {v[0]:.3f} lin {v[1]:.3f} dur {v[2]:.3f}; checkpoint saved")
                save()
                last_save = time.time()
            if stop["now"] or now - run_start >= a.minutes * 60:
                stop["now"] = True
                break
        else:
            epoch += 1
            continue
    trained_s = base_trained + (time.time() - run_start)
    v = validate()
    log(a.out, f"stopped at step {step}, epoch {epoch}, {trained_s / 60:.1f} min trained in all; "
               f"held-out: mel {v[0]:.3f} lin {v[1]:.3f} dur {v[2]:.3f}")
    save()


if __name__ == "__main__":
    main()
