"""Registered diagnostic codes and their long explanations (``nnspec explain CODE``).

Ranges: E0xxx reading and syntax, E1xxx names and arguments, E2xxx shapes, E3xxx imports,
E4xxx assertions and limits, W0xxx warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from textwrap import dedent


@dataclass(frozen=True)
class Code:
    code: str
    title: str
    explanation: str


CODES: dict[str, Code] = {}


def _code(code: str, title: str, explanation: str) -> str:
    CODES[code] = Code(code, title, dedent(explanation).strip())
    return code


# -- reading and syntax ---------------------------------------------------------------------
SYNTAX = _code("E0001", "syntax error", """
    The file does not follow the grammar of the spec language. The message says what was
    found and what could come at that place. Common causes: a missing `)` or `}`, a chain
    step without `->`, a keyword used as a name (`input`, `output`, `model`, `block`,
    `train`, `if`, `else`, `import`, `assert`, `rounding`), or two statements on one line.

        x -> conv(6, 5) tanh        # error: `->` missing before `tanh`
        x -> conv(6, 5) -> tanh     # ok
""")
UNEXPECTED_EOF = _code("E0002", "unexpected end of file", """
    The file ends in the middle of a construct, usually an unclosed `(`, `[` or `{`.
    The message says which bracket is still open and where it was opened.
""")
BAD_ENCODING = _code("E0003", "file is not UTF-8 text", """
    Spec files are UTF-8 text. The file contains bytes that are not valid UTF-8 or a NUL
    byte, which usually means a binary file (a checkpoint, an ONNX model, an image) was
    given where a `.nn` file was expected.
""")
TOO_DEEP = _code("E0004", "nesting too deep", """
    Brackets are nested deeper than 100 levels, expressions or `if` branches deeper than
    256 levels.
    No real architecture needs this; it protects the compiler from pathological input.
""")
UNREADABLE = _code("E0005", "cannot read file", """
    The file does not exist, is a directory, or cannot be read with the current permissions.
""")
NO_MODEL = _code("E0006", "no model to check", """
    The file defines no `model`, or `--model` names a model that is not defined. A file of
    blocks alone can be imported by other files but has nothing to compile by itself.
""")
BAD_NUMBER = _code("E0007", "invalid number", """
    A numeric literal is malformed or out of range. Integers may use `_` separators and a
    K, M or G suffix (`5M` is 5,000,000); floats use `.` or an exponent (`1e-3`).
""")

# -- names and arguments ------------------------------------------------------------------
UNKNOWN_OP = _code("E1001", "unknown layer or block", """
    A chain step names neither an op of the registry nor a block defined in this file or an
    imported one. Names are case-sensitive: ops are lowercase (`conv`, `batchnorm`), blocks
    are whatever the `block` definition says. `nnspec check` suggests the closest name.
""")
UNKNOWN_NAME = _code("E1002", "unknown name", """
    An expression uses a name that is not a parameter of the enclosing block or model, an
    input, or a value bound earlier with `name = chain`. Values must be bound before use.
""")
DUPLICATE = _code("E1003", "duplicate definition", """
    Two definitions share one name: two blocks or models, two parameters, two inputs or two
    bound values in one body, or two layers given the same label. Each name must be unique
    in its scope because it becomes a module path (a state_dict key).
""")
UNKNOWN_ARG = _code("E1004", "unknown argument", """
    A keyword argument is not accepted by the op or block. `nnspec check` lists the
    accepted arguments and suggests the closest one.
""")
MISSING_ARG = _code("E1005", "missing argument", """
    A required argument of an op, block or model was not given. Required arguments have no
    default; give them positionally or by keyword.
""")
TOO_MANY_ARGS = _code("E1006", "too many positional arguments", """
    More positional arguments were given than the op or block takes positionally. Give the
    extra ones by keyword, e.g. `conv(64, 3, stride=2)`.
""")
BAD_ARG = _code("E1007", "invalid argument value", """
    An argument has the wrong type or lies outside its range: a negative channel count, a
    dropout probability outside [0, 1), a float where an integer is required, or an unknown
    choice for a named option (e.g. `padding=sme` instead of `same`).
""")
BAD_EXPR = _code("E1008", "invalid expression", """
    An expression cannot be evaluated: a type mismatch (adding a tensor to a number),
    division by zero, an index out of range (`x.shape[5]` on a rank-3 input), an unknown
    fact of a tensor (`x.chanels`), or a condition of `if` that is not a boolean.
""")
NOT_A_LAYER = _code("E1009", "not a layer", """
    After `->` comes a layer: an op (`relu`, `conv(6, 5)`), a block (`Residual(64)`), a
    repeated block (`Residual(64) * 2`) or a labelled one (`stage1: Residual(64)`).
    Numbers, tensors and other expressions cannot be chain steps.
""")
MISSING_OUTPUT = _code("E1010", "missing output", """
    A model or block has no `output`. End a chain with `-> output`, or list bound values in
    an `output a, b` statement.
""")
BAD_INPUT = _code("E1011", "invalid input declaration", """
    A model input needs a shape, e.g. `input x: [1, 28, 28]` (channels, height, width; the
    batch dimension is implicit), with positive integer sizes. A block has exactly one
    `input`, which receives the value piped into the block.
""")
RECURSION = _code("E1012", "recursive block", """
    A block uses itself, directly or through other blocks. Architectures are finite graphs:
    use repetition (`Block(...) * n`) instead of recursion.
""")
UNUSED = _code("W0001", "unused value", """
    A value was bound with `name = chain` but never used, so its layers are computed and
    counted in the summary but never reach an output. Use it or remove it.
""")

LINEAR_ON_MAP = _code("W0002", "linear on a feature map", """
    `linear` acts on the last axis only, as torch.nn.Linear does: on [C, H, W] it mixes the
    W values of each row and keeps C and H. That is rarely meant after convolutions or a
    global pool; put `flatten` before the `linear` to connect every feature.
""")

LAYERNORM_AXES = _code("W0003", "layernorm axes ambiguous", """
    `layernorm` without `dims` normalises every feature of a sample together. On a
    [C, H, W] feature map that is all C·H·W values, with γ and β of shape [C, H, W]; a
    reader (or a ported ConvNeXt) may expect each position's C values to be normalised
    alone, as LayerNorm2d does. The spec means the first; say so with `dims=all`
    (`layernorm(dims=all)`), or pick the trailing axes with `dims=1`, `dims=2` or `dims=3`.
""")

OPTION_SHADOWS = _code("W0004", "option name is also a value", """
    A bare name in a layer's arguments is an option of that argument (`dims=channels`,
    `padding=same`, `axis=height`) when the argument has an option of that name, even where a
    model or block argument, or a bound value, has the same name: an argument's own option
    words always mean the option. The warning says the value was not used; to pass the value,
    rename it (`n_channels`), so that the spec reads one way to every reader.
""")

# -- shapes -------------------------------------------------------------------------------
NOT_INTEGER = _code("E2101", "output size is not an integer", """
    For a convolution or pooling window of size F, stride S and padding P over an input of
    size N, the output size is (N + 2P - F) / S + 1. When S does not divide N + 2P - F the
    window does not tile the input, which the course calls an illegal stride. Change the
    padding or the stride (the help line gives values that divide exactly), or declare the
    rounding: `rounding floor` drops the last partial window (as PyTorch does),
    `rounding=ceil` on a pool keeps it. The declared rounding is recorded in the IR.
""")
NONPOSITIVE = _code("E2102", "output size is not positive", """
    The window (kernel, after dilation) is larger than the padded input, so no output
    position exists: (N + 2P - F) / S + 1 < 1. Use a smaller kernel, more padding, or feed a
    larger input.
""")
RANK = _code("E2103", "wrong input rank", """
    The op expects another number of dimensions (the batch dimension excluded): `conv2d`
    and `maxpool` want [C, H, W], `conv1d` wants [C, L], `linear` acts on the last axis,
    `lstm` wants [T, F]. Insert a `flatten` or `reshape` to change the rank.
""")
DIVISIBLE = _code("E2104", "size not divisible", """
    A size must be a multiple of another: channels of a grouped convolution must be
    divisible by `groups`, groupnorm's channels by its number of groups, maxout's channels
    by k. The message gives the numbers.
""")
ADD_MISMATCH = _code("E2105", "operand shapes do not broadcast", """
    Elementwise arithmetic between tensors (`a + b`, `a - b`, `a * b`, `a / b`) follows
    numpy's broadcasting over the sample axes: the shapes are aligned on their last axis and
    each pair of sizes must be equal or one of them 1 (a missing leading axis counts as 1).
    `[C, H, W] * [C, 1, 1]` scales each channel (squeeze-excitation); `[L, D] + [D]` adds a
    vector to every row.

    A residual sum `x + f(x)` needs equal shapes: when a block changes the channel count or
    the resolution, project the skip path, e.g. with a strided 1x1 convolution.
""")
CONCAT_MISMATCH = _code("E2106", "shapes of a concatenation differ", """
    `concat(...)` joins tensors along one axis (channels by default); every other axis must
    agree. In a U-Net with unpadded convolutions, crop the skip connection first with
    `center_crop`.
""")
RESHAPE = _code("E2107", "reshape changes the number of elements", """
    `reshape` must keep the number of elements per sample. At most one size may be -1,
    which is inferred.
""")
CROP = _code("E2108", "crop or pad does not fit", """
    `center_crop` cannot crop to a size larger than its input. When input and target
    differ by an odd number of pixels, the extra one is removed at the bottom/right, as
    torchvision does. `pad` takes non-negative amounts.
""")
DTYPE = _code("E2109", "wrong input type", """
    The op expects another element type: `embedding` takes integer token ids (an input
    declared `int[...]`), every other op takes floats.
""")
ARGUMENT_SHAPE = _code("E2110", "argument does not match the input", """
    A per-axis argument (kernel, stride, padding, dilation, output_padding, scale) is a
    tuple whose length differs from the number of spatial axes of the input, or a size
    argument does not fit the input.
""")

# -- imports ------------------------------------------------------------------------------
IMPORT_NOT_FOUND = _code("E3001", "imported file not found", """
    `import "file.nn"` is resolved relative to the importing file. The file must exist.
""")
IMPORT_CYCLE = _code("E3002", "import cycle", """
    Files import each other in a cycle. Move the shared blocks into a third file that both
    import.
""")
IMPORT_OUTSIDE = _code("E3003", "import outside the project", """
    An import may only reach files inside the folder of the file being compiled (and its
    subfolders). This keeps a spec from reading arbitrary files on the machine.
""")

# -- assertions and limits ------------------------------------------------------------------
ASSERTION = _code("E4001", "assertion failed", """
    An `assert` in a model or block did not hold. Budget assertions compare the totals of the
    enclosing model or block instance: `params`, `trainable_params`, `buffers`, `macs`,
    `memory` (activation bytes per sample) and `receptive_field` (in input pixels), e.g.
    `assert params < 5M`. Other assertions check parameters: `assert c % 4 == 0`.
""")
LIMIT = _code("E4002", "size limit exceeded", """
    A layer or model is larger than the configured limit (by default 10G parameters per
    model, 2**31 elements per tensor). Such sizes are almost always a typo. Raise the limit
    with `nnspec check --max-params N` if you mean it.
""")
BAD_ASSERT = _code("E4003", "invalid assertion", """
    An assertion must be a comparison or another boolean expression; budget names
    (`params`, `macs`, `receptive_field`...) are defined only inside `assert`.
    `receptive_field` needs a model with spatial axes.
""")

# -- recipes (`train` blocks) -----------------------------------------------------------------
RECIPE_SETTING = _code("E5001", "unknown recipe setting", """
    A line of a `train` block names no setting. The settings are: data, split, batch,
    epochs, loss, target, optimizer, schedule, regularize, init, clip, augment, early_stop,
    metrics, seed, device, solver, freeze, lr_groups, ensemble. Each may be given once.
    `nnspec check` suggests the closest name.
""")
RECIPE_MISSING = _code("E5002", "missing recipe setting", """
    A recipe needs at least `data` (what to fit) and `loss` (what to minimise); every other
    setting has a default (see docs/language.md, "Train recipes"). A setting given without
    a value (`epochs` alone on its line) is missing its value.

        train LeNet5 {
            data digits(as_image=true, resize=32)
            loss cross_entropy
        }
""")
RECIPE_CHOICE = _code("E5003", "unknown recipe choice", """
    A recipe value names no known choice: a data source, loss, optimizer, schedule,
    regularizer, init scheme, op kind (in `init conv=...`), clipping, augmentation, metric,
    early-stopping monitor or device. The message lists the choices and suggests the
    closest; a name that belongs to another setting (`loss adam`) says which.
""")
RECIPE_VALUE = _code("E5004", "invalid recipe value", """
    A hyperparameter has the wrong type or lies outside its range: a learning rate must be
    > 0, momentum and Adam betas in [0, 1), eps > 0, epochs, batch and patience >= 1, a
    probability in [0, 1], a seed >= 0, an ensemble of 2 to 64 members. Values are
    constants (numbers, true/false, strings, names such as `full`, tuples); arithmetic such
    as `1/3` or `2**-10` is allowed. Some values are checked against each other: cosine's
    min_lr below the learning rate, a warm-up shorter than the run.
""")
RECIPE_SPLIT = _code("E5005", "invalid split", """
    `split train / val / test` gives the fractions of the data for training, validation and
    testing (`split 0.8 / 0.2` has no test part). Each lies in [0, 1], the training part is
    > 0, and they sum to 1 (within 1e-6). The split is stratified by class and seeded.
""")
RECIPE_MODEL = _code("E5006", "recipe model not found", """
    `train Name { ... }` trains the model `Name`, defined in this file or an imported one.
    Arguments in `train Name(classes=3)` must be parameters of that model, of their declared
    types.
""")
RECIPE_DATA = _code("E5007", "data does not fit the model input", """
    The shape of one sample of the data (known at compile time for the built-in sets, and
    for `images(..., size=...)`) must equal the model's input, batch excluded, after the
    augmentations that change it (`random_crop`). digits is [64], [1, 8, 8] with
    as_image=true, [1, r, r] with resize=r and [8, 8] with sequence=true; iris [4],
    breast_cancer [30], diabetes [10], wine [13], fashion_mnist [1, 28, 28]. A recipe
    trains a model with exactly one float input, except `text("file.txt", context=n)`:
    int64 ids, `input t: int[n]`; its file must be UTF-8 and longer than n characters.
""")
RECIPE_LOSS = _code("E5008", "loss does not fit the model output", """
    The loss reads the model's (first) output: cross_entropy and nll want class scores [C]
    with C >= 2 (or [C, H, W] per pixel), hinge [C], bce and bce_logits one value [1] (or
    [1, H, W]), mse and l1 any shape, but the target's shape on a known data set ([1] for a
    label or a regression value). With a known data set, C must equal its number of classes.
    `target input` compares the output with the input, so their shapes must agree.
""")
RECIPE_TASK = _code("E5009", "classification and regression mixed", """
    The data, the loss, the metrics and the target must agree on the task. Classification
    losses (cross_entropy, nll, hinge, bce, bce_logits) need class labels; bce and
    bce_logits two classes. diabetes is a regression set: use mse or l1. `accuracy` needs a
    classification loss; `mae` and `mse` metrics compare outputs with numeric targets and do
    not apply to class scores. `target input` (an autoencoder) needs mse, l1, bce or
    bce_logits.
""")
RECIPE_EARLY_STOP = _code("E5010", "early stopping cannot work", """
    `early_stop patience=n` watches a validation quantity (`monitor`, val_loss by default),
    so the split needs a validation part > 0, and a monitored metric (`val_accuracy`) must
    be listed in `metrics`.
""")
RECIPE_AUGMENT = _code("E5011", "augmentation does not fit", """
    flip, random_crop, brightness and contrast transform images: the model input must be
    [C, H, W]. random_crop's size must equal the model input's H x W, and fit the padded
    data images. normalize's per-channel mean and std need one value per channel.
""")
NO_RECIPE = _code("E5012", "no recipe to load", """
    The file has no `train` block, several (choose one by name), or none of the given name.
    A recipe is named by `train Model as name { ... }`, else by its model's name.
""")
RECIPE_SOLVER = _code("E5013", "the solver does not fit the model", """
    `solver normal_equation` fits θ = (XᵀX)⁻¹Xᵀy in closed form (a least-squares solve, never
    an explicit inverse) instead of descending the gradient. That minimiser exists only for
    a linear model under the squared error: the model must be one `linear` layer (after an
    optional `flatten`, so that it sees one feature vector per sample) and the loss `mse`.
    A hidden layer or an activation makes the loss non-quadratic in the weights; l1, bce and
    cross_entropy have no closed-form minimiser. Of the regularizers only `l2(λ)` keeps the
    closed form (ridge regression: (XᵀX + nλI)θ = Xᵀy, the bias not penalised); l1,
    max_norm and weight_decay do not. Random augmentations and frozen weights contradict a
    single exact solve. Use `solver gradient` (the default) for everything else.

        train LinReg as closed_form {
            data   diabetes
            loss   mse
            solver normal_equation
        }

    `solver knn` fits k nearest neighbours by storing the training split in the model's one
    `knn` layer, which must be the output, after layers without weights; its `memory` must
    equal the size of the training split (the help gives the number), and a `knn` layer
    cannot be trained by any other solver. It needs class labels (no regression data, no
    `target input`) and refuses random augmentations and ensembles. `cv kfold(5, k=(...))`
    chooses the model argument `k` by cross-validation: the model needs a parameter `k`,
    every listed k must fit the samples a fold stores, and `cv` needs `solver knn`.
""")
RECIPE_PARAMS = _code("E5014", "parameter pattern does not fit the model", """
    `freeze`, `lr_groups` and `init from(..., match=...)` name parameters by glob patterns
    over the model's state names, as `nnspec check --json` and the state_dict show them:
    `features.*` matches every tensor under the layer (or block) labelled `features`,
    `*.bias` every bias, `conv_1.*` the first convolution. `*` matches any text, dots
    included, `?` one character, `[ab]` one of the listed characters. A pattern that
    matches nothing is an error (usually a typo or a missing `.*`), so is a parameter in two
    learning-rate groups, and freezing every parameter (nothing would train).
""")
RECIPE_WEIGHTS = _code("E5015", "initial weights do not fit the model", """
    `init from("base.safetensors", match="features.*")` loads, after the init scheme, the
    tensors whose names match from a safetensors file, or from a run directory's
    best.safetensors. Files are never unpickled: only safetensors is read. Every matched
    tensor of the model must be in the file with the same shape. When the file exists at
    check time this is checked by `nnspec check`; otherwise when training starts. To put a
    new head on a trained model, leave the head out of `match` (its shape differs: it
    keeps its initialisation) and, usually, `freeze` what was loaded.
""")
SEARCH = _code("E5016", "invalid search", """
    A `search` block varies values of one `train` recipe of the same file and trains a trial
    per combination (`nnspec search FILE`):

        search LinReg as lr {
            strategy  refine(rounds=2, points=5)   # grid (default), random(trials=20, seed=0)
            optimizer.lr in log(1e-3, 1)           # log(a, b) / linear(a, b), points=n
            batch        in [32, 64]               # a list: the values as the recipe writes them
            model.hidden in [64, 128]              # a model argument
            cv        kfold(5)                     # score by cross-validation
            objective val_loss                     # val_loss, or val_ and a recipe metric
        }

    An axis names a recipe setting (`batch`), an argument of its choice (`optimizer.lr`,
    `schedule.factor`, `early_stop.patience`), one regularizer or augmentation of a list
    (`regularize.l2`), or a model argument (`model.hidden`); the recipe must write the
    setting whose argument is varied. A log range needs 0 < a < b; a range written with
    integers gives integers. Every list item and both ends of every range are checked as
    the recipe they make, at compile time: an error names the value. Without `cv` the
    trials are scored on the recipe's validation split, which must not be empty.
""")
LOSS_LAST_OP = _code("W5001", "loss and last layer disagree", """
    Some losses include the final activation: cross_entropy applies log-softmax itself (a
    model ending in `softmax` trains poorly: a classic bug), bce_logits applies the
    sigmoid itself. Others expect it in the model: bce wants probabilities (end with
    `sigmoid`), nll wants log-probabilities (end with `log_softmax`).
""")
RECIPE_NO_EFFECT = _code("W5002", "recipe setting without effect", """
    A setting is valid but does nothing or contradicts another one: a patience as long as
    the run, a step schedule that never steps, `gd` (full-batch gradient descent) with a
    mini-batch size, a batch larger than the training set, an init for an op kind the model
    does not have, the settings of gradient descent (optimizer, schedule, batch, epochs,
    clip, early_stop, init, lr_groups) with `solver normal_equation`, which solves in one
    step, a learning-rate group whose parameters are all frozen, an ensemble without a test
    part (never compared with its members), or of identical members (`solver
    normal_equation` without `bagging`).
""")
INIT_MISMATCH = _code("W5003", "init scheme does not suit the model", """
    zeros (or any constant) starts every unit of a layer equal, and they stay equal: the
    symmetry is never broken. Kaiming's variance 2/n is derived for ReLU, Xavier's for
    tanh and sigmoid: a ReLU network with Xavier, or a tanh network with Kaiming, starts
    with shrinking or growing activations.
""")
BLOCKS_TOO_DEEP = _code("E1013", "blocks nested too deeply", """
    A block uses a block that uses a block... more than 64 levels deep. Real architectures
    nest a few levels (a model, its stages, their units); this protects the compiler from
    pathological input. The note shows the chain of blocks.
""")
