"""Small, fast job specs shared by the growth tests."""


def tiny_spec(**over):
    spec = {
        "method": "grow",
        "seed": 3,
        "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 240},
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.05},
        "optimizer": {"nu": 1.0, "lam": 0.05},
        "growth": {"every": 2, "threshold": 0.5, "add": 2, "finetune_epochs": 2},
    }
    for key, value in over.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return spec
