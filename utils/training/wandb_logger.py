"""Optional Weights & Biases logging that never prompts for a login."""
import os


def _has_credentials():
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.join(os.path.expanduser("~"), ".netrc")
    return os.path.isfile(netrc) and "api.wandb.ai" in open(netrc).read()


def init_wandb(opt, name, run_dir, enabled, log):
    """Start a wandb run, or return None. Without credentials it logs offline and says so in one line."""
    if not enabled:
        return None
    import wandb

    mode = os.environ.get("WANDB_MODE")
    if mode is None and not _has_credentials():
        log.info(f"wandb: no WANDB_API_KEY or wandb login found, logging offline to {run_dir}/wandb "
                 "(upload later with `wandb sync`)")
        mode = "offline"
    elif mode in ("offline", "dryrun", "disabled"):
        log.info(f"wandb: WANDB_MODE={mode}" + (f", logging offline to {run_dir}/wandb (upload later with "
                                                 "`wandb sync`)" if mode != "disabled" else ", nothing is logged"))
    return wandb.init(project=opt.wandb_project_name, name=name, dir=run_dir, mode=mode,
                      config=dict(vars(opt)), settings=wandb.Settings(silent=True))


def log_images(run, figures, step=None):
    """Log matplotlib figures as images and close them."""
    if run is None:
        return
    import matplotlib.pyplot as plt
    import wandb
    run.log({key: wandb.Image(fig) for key, fig in figures.items()}, step=step)
    for fig in figures.values():
        plt.close(fig)
