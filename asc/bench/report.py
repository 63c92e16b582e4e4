"""The printed report of ``asc bench``: one table per section that finished (a partial JSON
prints what it holds), through the package's table formatter (:mod:`asc.tables`)."""

from __future__ import annotations

from asc.tables import format_table


def _head(r: dict) -> list[str]:
    m, sch = r["machine"], r.get("schedule", {})
    return [f"machine: {m.get('gpu', m['cpu'])}, {m['cpu_threads']} CPU threads, torch {m['torch']}, "
            f"device {r['device']}",
            f"steady state: median of {sch.get('epochs')} epochs of {sch.get('batches')} batches after "
            f"{sch.get('warmup')} warm-up epoch{' (--quick)' if r.get('quick') else ''}"] + (
        [f"LITIS-shaped folds with {' '.join(r['fold_overrides'])}"] if r.get("fold_overrides") else [])


def _frontends(rows: list[dict]) -> list[str]:
    cells = [[f["frontend"], f"{f['nnaudio_audio_s_per_s']:.0f}", f"{f['numpy_audio_s_per_s']:.0f}",
              f"{f['speedup']:.1f}", f"{f['relative_error']:.1e}"] for f in rows]
    return ["front-end (64 bands, 40/20 ms, 22.05 kHz, 30 s clips)   audio s per wall s",
            format_table(["", "nnAudio", "NumPy ref", "speed-up", "rel. error"], cells)]


def _loader(rows: list[dict]) -> list[str]:
    cells = [[str(x["workers"]), f"{x['loader_clips_per_s']:.1f}", f"{x['train_clips_per_s']:.1f}",
              f"{x['random_clips_per_s']:.1f}", f"{x['ratio']:.2f}"] for x in rows]
    return [f"loader, {rows[0]['clips']} cached LITIS-shaped clips (batch {rows[0]['batch']}, 4 s crops)   "
            "clips per s", format_table(["workers", "loader alone", "train (stap+bc)", "random", "ratio"], cells,
                                        align="rrrrr")]


def _training(rows: list[dict]) -> list[str]:
    keyed = {(x["model"], x["mix"], x["precision"], x["pipeline"]): x["clips_per_s"] for x in rows}
    cells = []
    for (model, mix, prec, pipe), v in keyed.items():
        if pipe == "with data":
            rnd = keyed[(model, mix, prec, "random tensors")]
            cells.append([model, mix, prec, f"{v:.1f}", f"{rnd:.1f}", f"{v / rnd:.2f}"])
    return [f"training step, LITIS-shaped (19 classes, {rows[0]['segment_s']} s segments of 30 s clips at "
            f"22.05 kHz, batch {rows[0]['batch']})   clips per s",
            format_table(["model", "mix", "prec", "with data", "random", "ratio"], cells, align="lllrrr")]


def _litis_fold(f: dict, parallel: list[dict] | None) -> list[str]:
    e = f["estimate"]
    cells = [["training epoch (steady: first excluded)", f"{f['steady_epoch_s']:.2f}",
              " ".join(f"{t:.2f}" for t in f["epoch_train_s"])],
             ["validation (per epoch)", f"{f['val_s']:.2f}", " ".join(f"{t:.2f}" for t in f["epoch_val_s"])],
             ["validation of the chosen checkpoint", f"{f['final_val_s']:.2f}", ""],
             ["test", f"{f['test_s']:.2f}", ""],
             ["attention pictures at the test's end", f"{f.get('test_pictures_s', 0):.2f}", ""],
             ["whole fold (start-up included)", f"{f['fold_wall_s']:.1f}", ""]]
    lines = [f"asc cv fold, LITIS-shaped ({f['clips']} clips of {f['clip_s']:g} s, {f['classes']} classes, "
             f"{f['n_train']}/{f['n_val']}/{f['n_test']} train/val/test, {f['config']}, {f['epochs']} epochs, "
             f"cache written in {f['cache_write_s']:.1f} s)",
             format_table(["", "seconds", "each"], cells, align="lrl"),
             f"estimate, not measured: the {e['splits']}-split protocol at {e['epochs']} epochs, {e['how']}: "
             f"{e['fold_s']:.0f} s per fold, {e['protocol_min']:.1f} min"]
    m = f.get("fold_memory_mb")
    if m:
        lines.append(f"host memory of the fold's main process: peak {m['peak']:.0f} MB (its own pages "
                     f"{m['anon']:.0f} MB and file-mapped pages {m['file']:.0f} MB at its end; workers not counted)")
    stages = f.get("memory_mb_at") or {}
    if stages:
        lines.append("  resident MB, own + file-mapped (peak so far): " + ", ".join(
            f"{name.replace('_', ' ')} {x['anon']:.0f} + {x['file']:.0f} ({x['peak']:.0f})"
            for name, x in stages.items() if x))
    ok = [p for p in parallel or [] if "error" not in p and p["parallel_folds"] > 1 and p["speedup"] > 1]
    if ok:
        best = max(ok, key=lambda p: p["speedup"])
        lines.append(f"  with the best measured cv.parallel_folds speed-up ({best['speedup']:.2f} at "
                     f"{best['parallel_folds']}, demo-like section): {e['protocol_min'] / best['speedup']:.1f} min")
    return lines


def _pictures(p: dict) -> list[str]:
    w, wo = p["with_pictures"], p["without_pictures"]
    lines = [f"asc predict, {p['files']} files of {p['clip_s']:g} s (model loaded once)   files per s",
             format_table(["", "files/s", "seconds"], [["without pictures", f"{wo['files_per_s']:.2f}",
                                                        f"{wo['seconds']:.1f}"],
                                                       ["--attention", f"{w['files_per_s']:.2f}",
                                                        f"{w['seconds']:.1f}"]]),
             f"one picture adds {p['picture_s_per_file']:.2f} s per file"]
    if "one_picture_s" in p:
        lines.append(f"  for comparison: one picture drawn in the main process {p['one_picture_s']:.2f} s; "
                     f"starting its {p['picture_workers']} picture processes {p['pool_start_s']:.2f} s"
                     + (f", of which their import of matplotlib at most {p['worker_import_s']:.2f} s"
                        if "worker_import_s" in p else ""))
    return lines


def _step_profile(rows: list[dict]) -> list[str]:
    cells = [[x["pipeline"], f"{x['wall_ms_per_step']:.2f}", f"{x['device_busy_ms_per_step']:.2f}",
              "-" if x["busy_fraction"] is None else f"{x['busy_fraction']:.2f}",
              f"{x['kernel_launches_per_step']:.0f}", f"{x['copies_per_step']:.1f}", f"{x['syncs_per_step']:.1f}"]
             for x in rows]
    return [f"where a training step goes (STAP-CRNN + BC, float32, batch {rows[0]['batch']}, {rows[0]['steps']} steps "
            "under the profiler)   per step",
            format_table(["", "wall ms", "device busy ms", "busy", "launches", "copies", "syncs"], cells,
                         align="lrrrrrr")]


def _litis_parallel(rows: list[dict]) -> list[str]:
    cells = []
    for x in rows:
        if "error" in x:
            cells.append([str(x["parallel_folds"]), f"{x['wall_s']:.1f}", "", "", "", "", "", f"error: {x['error']}"])
            continue
        e = x["estimate"]
        cells.append([str(x["parallel_folds"]), f"{x['wall_s']:.1f}", f"{x['steady_epoch_s']:.2f}",
                      f"{x['val_s']:.2f}", f"{x.get('epoch_speedup', float('nan')):.2f}", f"{e['fold_s']:.0f}",
                      f"{e['protocol_min']:.1f}", f"{x.get('process_peak_rss_mb', float('nan')):.0f}"])
    first = next((x for x in rows if "estimate" in x), None)
    e = first["estimate"] if first else {"splits": 20, "epochs": "?"}
    return [f"LITIS-shaped folds side by side on one device ({rows[0]['epochs']} epochs each, one process per fold, "
            "test pictures included)",
            format_table(["folds at once", "wall s", "epoch s", "val s", "epoch speed-up", "fold s (est.)",
                          "protocol min (est.)", "peak RSS MB"], cells, align="rrrrrrrr"),
            f"estimate, not measured: the {e['splits']}-split protocol at {e['epochs']} epochs in waves of N folds; "
            "a fold's fixed cost is the measured wall time (all N processes, start-up to the last one's end) less "
            "its measured epochs; epoch speed-up: N x epoch alone / epoch among N; peak RSS: the largest of the N "
            "fold processes' peaks, each over its whole life"]


def _parallel(rows: list[dict]) -> list[str]:
    def maybe(x, key):
        return f"{x[key]:.2f}" if key in x else "-"

    cells = [[str(x["parallel_folds"]), f"{x['wall_s']:.1f}", f"{x['folds_per_min']:.2f}", f"{x['speedup']:.2f}",
              maybe(x, "overlap_speedup"), maybe(x, "startup_per_wave_s"),
              f"error: {x['error']}" if "error" in x else ""] for x in rows]
    return [f"asc cv, demo-like ({rows[0]['folds']} folds, {rows[0]['epochs']} epochs, start-up included)",
            format_table(["parallel_folds", "wall s", "folds/min", "speed-up", "in-fold speed-up",
                          "start-up s per wave", ""], cells, align="rrrrrrl"),
            "in-fold speed-up: N x mean fold time alone / mean fold time with N side by side "
            "(process start-up left out); start-up per wave: the wall time outside the folds' own timers, "
            "less one process's, per wave of N fold processes (what each fold process pays to start; "
            "parallel folds pay off once a fold takes several times that)"]


def format_result(r: dict) -> str:
    """The tables of the sections that finished (a partial JSON prints what it holds)."""
    blocks = [_head(r)]
    for key, fmt in (("frontends", _frontends), ("loader", _loader), ("training", _training)):
        if r.get(key):
            blocks.append(fmt(r[key]))
    if r.get("litis_fold"):
        blocks.append(_litis_fold(r["litis_fold"], r.get("parallel_folds")))
    if r.get("step_profile"):
        blocks.append(_step_profile(r["step_profile"]))
    if r.get("pictures"):
        blocks.append(_pictures(r["pictures"]))
    if r.get("litis_parallel"):
        blocks.append(_litis_parallel(r["litis_parallel"]))
    if r.get("parallel_folds"):
        blocks.append(_parallel(r["parallel_folds"]))
    if r.get("compile"):
        blocks.append([f"torch.compile check: {x['pipeline'][16:]}: {x['clips_per_s']:.1f} clips/s"
                       for x in r["compile"]])
    if "complexity" in r:
        from asc.models.complexity import format_complexity

        blocks.append(["model size and cost (multiply-accumulates per second of audio, segments back to back)",
                       *format_complexity(r["complexity"])])
    if r.get("section_memory_mb"):
        blocks.append(_section_memory(r["section_memory_mb"]))
    blocks.append([f"peak RSS {r['peak_rss_mb']:.0f} MB" + (f", peak device memory {r['peak_device_memory_mb']:.0f} MB"
                                                            if "peak_device_memory_mb" in r else "") +
                   f"; benchmark took {r['seconds']:.0f} s (sections: {', '.join(r.get('sections', []))})"])
    return "\n\n".join("\n".join(b) for b in blocks)


def _section_memory(sections: dict) -> list[str]:
    rows = [(name, f"{m['peak']:.0f}", f"{m['anon']:.0f}", f"{m['file']:.0f}") for name, m in sections.items() if m]
    if not all(m.get("peak_reset", True) for m in sections.values()):
        rows.append(("(the peak could not be restarted: each is the peak so far)", "", "", ""))
    return ["host memory per section (MB): peak resident during it; its own and file-mapped pages at its end",
            format_table(["section", "peak RSS", "anon", "file"], rows, align="lrrr")]
