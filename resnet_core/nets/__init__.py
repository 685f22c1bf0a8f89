"""The networks: plain and residual CIFAR ResNets, their checkpoints, ImageNet and community CIFAR-10 weights."""
