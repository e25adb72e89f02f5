"""Command-line options of the scripts that run a model: the model and how it runs, the EchoNet data, and the
two training stages. Every flag of the official CoReEcho README commands is accepted with the same meaning; the
extra ones (device, AMP, resume, cache, ...) default to the released behaviour. They live here, not in utils,
because they offer this package's models and depthwise implementations as choices."""
from utils.script.options import parser_with_defaults
from utils.script.validators import non_negative_float, non_negative_int, positive_float, positive_int

from .build import MODEL_NAMES
from .uniformer import DEPTHWISE_CHOICES

AMP_CHOICES = ("auto", "none", "bf16", "fp16")


def add_model_args(parser, frames=None, frequency=None, from_checkpoint=False):
    """The model and how it runs: shared by every script that runs the encoder. `frames` / `frequency`:
    defaults for the clip shape (None: the flag is required, as in the released scripts). `from_checkpoint`:
    --model / --frames / --frequency default to None, filled from the checkpoint by models.settings.fill_options
    (`frames` / `frequency` then say the fallback shown in the help)."""
    if from_checkpoint:
        then = "the checkpoint's, else {}"
        parser.add_argument("--model", type=str, default=None, choices=MODEL_NAMES,
                            help=f"default: {then.format('the model its weights fit')}")
        parser.add_argument("--frames", type=positive_int, default=None,
                            help=f"frames per clip; default: {then.format(frames)} (paper: 36)")
        parser.add_argument("--frequency", type=positive_int, default=None,
                            help=f"sampling period between frames; default: {then.format(frequency)} (paper: 4)")
    else:
        parser.add_argument("--model", type=str, default="uniformer_small", choices=MODEL_NAMES)
        parser.add_argument("--frames", type=positive_int, required=frames is None, default=frames,
                            help="frames per clip (paper: 36)")
        parser.add_argument("--frequency", type=positive_int, required=frequency is None, default=frequency,
                            help="sampling period between frames (paper: 4)")
    parser.add_argument("--num_workers", type=non_negative_int, default=4, help="data-loader worker processes")
    parser.add_argument("--device", type=str, default="auto", choices=("auto", "cuda", "cpu"),
                        help="auto = CUDA when present, else CPU")
    parser.add_argument("--amp", type=str, default="none", choices=AMP_CHOICES,
                        help="mixed precision: none = fp32 as released; bf16 is faster on recent GPUs; "
                             "auto = bf16 where the GPU supports it, else fp32")
    parser.add_argument("--channels_last", action="store_true", help="channels_last_3d memory format")
    parser.add_argument("--depthwise", type=str, default="conv3d", choices=DEPTHWISE_CHOICES,
                        help="depthwise 3D convolutions: conv3d as released; conv2d (same weights, summed over "
                             "time; faster on GPUs); auto = conv2d for the 5x5x5 ones only (fastest on an H100)")


def add_data_and_model_args(parser, frames=None, frequency=None, from_checkpoint=False):
    parser.add_argument("--data_folder", type=str, default="./data",
                        help="EchoNet-Dynamic root (FileList.csv, VolumeTracings.csv, Videos/)")
    add_model_args(parser, frames, frequency, from_checkpoint)
    parser.add_argument("--cache_dir", type=str, default=None,
                        help="keep decoded videos here as uint8 .npy (memory-mapped); off by default")
    parser.add_argument("--prefetch_factor", type=positive_int, default=2, help="batches loaded ahead per worker")


def training_parser(stage):
    parser = parser_with_defaults("train_first_stage.py" if stage == 1 else "train_second_stage.py",
                                  f"CoReEcho stage {stage} training" + (
        ": RnC on the encoder + L1 on a detached MLP regressor" if stage == 1
        else ": MLP probing of the frozen stage-1 encoder"))
    add_data_and_model_args(parser)
    parser.add_argument("--print_freq", type=positive_int, default=10, help="log every N batches")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="videos per batch (per process under torchrun)")
    parser.add_argument("--epochs", type=non_negative_int, default=25 if stage == 1 else 4,
                        help="last epoch index: epochs 0..EPOCHS run, i.e. EPOCHS+1 passes, as the released code")
    parser.add_argument("--learning_rate", type=positive_float, default=1e-4)
    parser.add_argument("--weight_decay", type=non_negative_float, default=1e-4)
    parser.add_argument("--trial", type=int, default=0, help="run id, also the random seed")
    parser.add_argument("--aug", action="store_true", help="random 6-pixel shift augmentation")
    parser.add_argument("--temp", type=positive_float, default=2.0,
                        help="RnC temperature (released default 2; the paper's command uses 1.0)" if stage == 1
                        else "unused in stage 2; accepted so the released commands run unchanged")
    parser.add_argument("--label_diff", type=str, default="l1", choices=["l1"], help="RnC label distance")
    parser.add_argument("--feature_sim", type=str, default="l2", choices=["l2"], help="RnC feature similarity")
    parser.add_argument("--pretrained_weights", "--pretrained_weight", dest="pretrained_weights", default=None,
                        help="stage 1: UniFormer Kinetics-400 state dict (the paper starts from it); "
                             "stage 2: a stage-1 checkpoint (best.pth)")
    parser.add_argument("--val_n_clips_per_sample", type=positive_int, default=1,
                        help="clips averaged per validation video (fixed by --trial)")
    parser.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline without a login)")
    parser.add_argument("--wandb_project_name", type=str, default="echonet-ef")
    parser.add_argument("--save_root", type=str, default="./save", help="runs are saved in SAVE_ROOT/<run name>/")
    parser.add_argument("--run_name", type=str, default=None, help="override the released run-name pattern")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a last.pth (default: this run's last.pth)")
    parser.add_argument("--save_every_steps", type=non_negative_int, default=0,
                        help="also write last.pth every N training steps, for machines that die without a signal "
                             "(0: only at the end of each epoch, and on SIGTERM)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    parser.add_argument("--sync_bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun")
    parser.add_argument("--deterministic", action="store_true",
                        help="cuDNN deterministic algorithms and no autotuning (slower; as the released set_seed)")
    if stage == 1:
        parser.add_argument("--lr_decay_rate", type=non_negative_float, default=0.1,
                            help="lr factor from --lr_step_epoch on")
        parser.add_argument("--lr_step_epoch", type=int, default=15, help="epoch of the lr drop (-1: never)")
    else:
        parser.add_argument("--reference", choices=("auto", "none"), default="auto",
                            help="auto: at the end write best.pth's familiarity reference beside it "
                                 "(best.pth.reference.npz, which predict.py and the page use; every train and val "
                                 "video is scored once more); none: leave it out")
    return parser
