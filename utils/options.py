"""Command-line options. Every flag of the official CoReEcho README commands is accepted with the
same meaning; the extra ones (device, AMP, resume, cache, ...) default to the released behaviour."""
import argparse

from utils.runtime import AMP_CHOICES

MODELS = ("uniformer_small", "uniformer_base", "uniformer_tiny")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_data_and_model_args(parser):
    parser.add_argument("--data_folder", type=str, default="./data",
                        help="EchoNet-Dynamic root (FileList.csv, VolumeTracings.csv, Videos/)")
    parser.add_argument("--model", type=str, default="uniformer_small", choices=MODELS)
    parser.add_argument("--frames", type=positive_int, required=True, help="frames per clip (paper: 36)")
    parser.add_argument("--frequency", type=positive_int, required=True,
                        help="sampling period between frames (paper: 4)")
    parser.add_argument("--num_workers", type=int, default=4, help="data-loader worker processes")
    parser.add_argument("--device", type=str, default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--amp", type=str, default="auto", choices=AMP_CHOICES,
                        help="mixed precision: auto = bf16 on capable GPUs, none on CPU")
    parser.add_argument("--channels_last", action="store_true", help="channels_last_3d memory format")
    parser.add_argument("--cache_dir", type=str, default=None,
                        help="keep decoded videos here as uint8 .npy (memory-mapped)")
    parser.add_argument("--prefetch_factor", type=int, default=2)


def training_parser(stage):
    parser = argparse.ArgumentParser(f"CoReEcho stage {stage} training")
    add_data_and_model_args(parser)
    parser.add_argument("--print_freq", type=int, default=10, help="log every N batches")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="videos per batch (per process under torchrun)")
    parser.add_argument("--epochs", type=int, default=25 if stage == 1 else 4,
                        help="last epoch index: epochs 0..EPOCHS run, i.e. EPOCHS+1 passes, as the released code")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--trial", type=int, default=0, help="run id, also the random seed")
    parser.add_argument("--aug", action="store_true", help="random 6-pixel shift augmentation")
    parser.add_argument("--temp", type=float, default=2.0, help="RnC temperature (paper README: 1.0)")
    parser.add_argument("--label_diff", type=str, default="l1", choices=["l1"])
    parser.add_argument("--feature_sim", type=str, default="l2", choices=["l2"])
    parser.add_argument("--pretrained_weights", "--pretrained_weight", dest="pretrained_weights", default=None,
                        help="stage 1: UniFormer Kinetics-400 state dict; stage 2: a stage-1 checkpoint (best.pth)")
    parser.add_argument("--val_n_clips_per_sample", type=positive_int, default=1,
                        help="random clips averaged per validation video")
    parser.add_argument("--wandb", action="store_true")
    parser.add_argument("--wandb_project_name", type=str, default="echonet-ef")
    parser.add_argument("--save_root", type=str, default="./save", help="runs are saved in SAVE_ROOT/<run name>/")
    parser.add_argument("--run_name", type=str, default=None, help="override the released run-name pattern")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a last.pth (default: this run's last.pth)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    parser.add_argument("--sync_bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun")
    if stage == 1:
        parser.add_argument("--lr_decay_rate", type=float, default=0.1, help="lr factor from --lr_step_epoch on")
        parser.add_argument("--lr_step_epoch", type=int, default=15, help="epoch of the lr drop (-1: never)")
    return parser


def run_name(opt, stage):
    """The released folder names (spaces and brackets dropped so paths are shell-safe)."""
    if opt.run_name:
        return opt.run_name
    if stage == 1:
        return (f"RnC+L1SG_{opt.model}_ep_{opt.epochs}_lr_{opt.learning_rate}_d_{opt.lr_decay_rate}"
                f"_wd_{opt.weight_decay}"
                f"_bsz_{opt.batch_size}_aug_{opt.aug}_temp_{opt.temp}_label_{opt.label_diff}_feature_{opt.feature_sim}"
                f"_trial_{opt.trial}")
    return (f"RnC-LP_{opt.model}_ep_{opt.epochs}_lr_{opt.learning_rate}_wd_{opt.weight_decay}_bsz_{opt.batch_size}"
            f"_aug_{opt.aug}_temp_{opt.temp}_label_{opt.label_diff}_feature_{opt.feature_sim}_trial_{opt.trial}")
