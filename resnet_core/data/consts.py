"""Constants shared by data loading, checkpoints and attribution (kept free of heavy imports)."""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# torchvision's ImageNet normalisation; the akamaster CIFAR-10 checkpoints were trained with it too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
