"""The final report of a training stage, as the released scripts make it: best.pth scored on test, val and
train; final_metrics.json, timing.json and the test t-SNE figure in the run folder."""
from utils.engine.distributed import cleanup
from utils.evaluation import projection
from utils.evaluation.metrics import format_metrics
from utils.evaluation.representation import format_representation_metrics, representation_metrics
from utils.files.atomic import atomic_write_json
from utils.files.checkpoint import load_checkpoint, load_state_dict_strict
from utils.pictures.plots import embedding_map, embedding_maps, save_figure
from utils.script.cli import on_interrupt
from utils.training.resume import check_shared
from utils.training.validation import validate
from utils.training.wandb_logger import log_images


def final_report(run, saver, model, regressor, report_sets):
    """Load best.pth into `model` and `regressor` and score it on `report_sets` (split -> dataset of fixed
    clips, no augmentation); returns the report written to final_metrics.json."""
    on_interrupt(lambda: f"interrupted during the final report; {saver.hint()}", saver.hint)
    best_path = run.path("best.pth")
    check_shared(best_path)
    checkpoint = load_checkpoint(best_path)
    load_state_dict_strict(model, checkpoint["model"], "model", best_path)
    load_state_dict_strict(regressor, checkpoint["regressor"], "regressor", best_path)
    run.log.info("=" * 100)
    run.log.info(f"Best checkpoint: epoch {checkpoint['epoch']}, validation MAE {float(checkpoint['best_error']):.3f}")
    report, figures, total_clips, total_seconds = {"best_epoch": int(checkpoint["epoch"])}, {}, 0, 0.0
    for split in ("test", "val", "train"):
        metrics, result, seconds = validate(run, model, regressor, report_sets[split], split)
        report[split] = {**metrics, "embeddings": representation_metrics(result["embeddings"], result["labels"])}
        total_clips, total_seconds = total_clips + int(result["clip_predictions"].size), total_seconds + seconds
        run.log.info(f"{split.capitalize():5s} {format_metrics(metrics)}  ({len(result['names'])} videos, "
                     f"{seconds:.0f}s); embeddings: {format_representation_metrics(report[split]['embeddings'])}")
        title = f"{split} split, stage {run.stage} best (epoch {checkpoint['epoch']})"
        if run.wandb is not None:
            figures.update(embedding_maps(projection.projections(result["embeddings"]), result["labels"],
                                          f"(Best) {split.capitalize()}", title=title))
        if run.is_main and split == "test":  # the wandb t-SNE when there is one: computed once
            tsne = figures.get("(Best) Test TSNE (ef)")
            if tsne is None:
                tsne = embedding_map(projection.project(result["embeddings"], "tsne"), result["labels"], "tsne",
                                     title=title)
            saver.write("test_embeddings_tsne.png", lambda: save_figure(
                tsne, run.path("test_embeddings_tsne.png"), close=run.wandb is None))
    saver.timing["final_report"] = {"clips": total_clips, "seconds": round(total_seconds, 3)}
    if run.is_main:
        saver.write("final_metrics.json", lambda: atomic_write_json(report, run.path("final_metrics.json")))
        saver.write("timing.json", lambda: atomic_write_json(saver.timing, run.path("timing.json")))
        if run.wandb is not None:
            names = (("R2", "r2"), ("L2", "rmse"), ("L1", "mae"))
            run.wandb.log({f"(Best) {split.capitalize()} {name}": report[split][key]
                           for split in ("test", "val", "train") for name, key in names})
            log_images(run.wandb, figures)
            run.wandb.finish()
    files = ["training.log"] + [name for name in saver.written if name != "training.log"]
    run.log.info(f"Saved in {run.folder}: {', '.join(files)}")
    cleanup()
    return report
