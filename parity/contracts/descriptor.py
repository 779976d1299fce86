"""What parity knows about a framework, declared once beside its runner.

Each runner module holds one ``DESCRIPTOR = Framework(...)``; ``registry.py``
lists them, and every other module (checkpoint routing, the conversion cache,
task tables, worker environments, schedules, reports) reads these fields
instead of spelling a framework's names itself. Declaring a descriptor imports
nothing heavy, so the parent process can read them without a framework.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    key: str                     # the name on the command line and in results.json: "pt"
    label: str                   # for people: "PyTorch"
    runner: str                  # "module:Class" under parity.worker.runners
    aliases: tuple = ()          # other names accepted for the key: ("torch", "pytorch")
    requires: tuple = ()         # modules that must import for the runner to be available
    extra: str = ""              # the pip extra that installs it: parity[torch]
    main_module: str = ""        # the module whose presence in sys.modules shows the framework was imported
    packages: tuple = ()         # distributions whose versions results.json and the conversion cache record
    shown_versions: tuple = ()   # of those, the ones report headers show
    import_names: tuple = ()     # top-level modules a worker that does not use this framework blocks
    weight_files: tuple = ()     # transformers' file names, in its order of preference (indexes for shards)
    native_file: str = ""        # what save_pretrained writes: the conversion cache's entry file
    class_prefix: str = ""       # transformers class names: "TF" + "BertModel"
    auto_module: str = ""        # transformers.models.auto module holding the auto mappings
    auto_prefix: str = ""        # mapping-name prefix there: "TF_" + "MODEL_MAPPING_NAMES"
    use_env: tuple = ()          # transformers' switches that keep `import transformers` from importing it
    worker_env: tuple = ()       # (name, value) defaults every worker gets (set before any import)
    cpu_only_env: tuple = ()     # (name, value) that keep it off the GPU for --device cpu (CUDA_VISIBLE_DEVICES aside)
    converts_from: tuple = ()    # frameworks transformers converts from directly (from_pt, from_tf, ...)
    warm_imports: tuple = ()     # modules every load imports after ``requires``: a pool's template imports them (forkserver.py)
    idle_bytes: int = 700 << 20  # resident memory of a worker after its imports (schedule.py)
    # A worker's peak beyond idle_bytes, as multiples of the float32 weights (schedule.py): loading natively,
    # and converting from another framework's weights (the conversion cache's save included).
    load_factor: float = 2.0
    convert_factor: float = 4.0
    float64_oracle: bool = False  # the runner can re-run in float64 (--explain's oracle)
    compile_cache: bool = False   # the runner keeps compiled ops in a persistent cache (conversion_cache.compile_dir)
    no_cache_why: str = ""        # why its plain forward pass returns no past_key_values, where it does not
    # A framework that loads transformers checkpoints through its own converters (KerasHub):
    catalog: str = ""             # module under parity.worker.runners with classes(task) and why_not(model_type, task),
    #                               read instead of transformers' auto mappings
    own_env: tuple = ()           # (name, value) set in its own worker only (KERAS_BACKEND), before any import
    uses: tuple = ()              # other frameworks' keys whose modules its worker imports (not blocked there)
    no_outputs: tuple = ()        # (output group, why) it does not produce: not compared, not failed
    default: bool = True          # in the default --frameworks
    load_options: tuple = ("auto", "fp32")  # the FW:OPTION loading variants its runner honours (parity.contracts.variants)
