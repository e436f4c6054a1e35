r"""CelebA hair colour on a TPU pod slice: configs/celeba_hair.py with a pod-sized global batch in bf16.

    # every worker of the slice (launch/tpu_pod.sh does this; docs/scaling.md):
    jaxmask train --config configs/celeba_hair_tpu_pod.py \
        --config.data.data_dir /mnt/jaxmask/tfds --workdir /mnt/jaxmask/runs/celeba_pod

Differs from configs/celeba_hair.py only in the global batch (1024, split over
every device of every host: 32 per chip on a v4-64, 16 per chip on a
v5litepod-64) and the compute dtype (bfloat16: the MXU's native input;
parameters, optimiser state and losses stay float32). The mesh is the
single-host file's: ``parallel="jit"`` over a 1-D ``('data',)`` mesh of all
``num_devices=0`` devices, which the state (≈3.4 M parameters) is replicated
over. The batch must divide by the device count (start-up says so if not).
``smoke`` keeps the fixture's shapes with the pod's dtype, for a quick check.
"""

from jaxmask import config_files


def get_config(arg: str | None = None):
    config = config_files.load_sibling(__file__, "celeba_hair.py", arg)
    if (arg or "default") == "default":
        config.batch_size = 1024
    config.dtype = "bfloat16"
    return config
