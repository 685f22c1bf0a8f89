"""What each tab of Why it works shows and what to look for, by analysis name: the page's text in one
place, so that it reads (and is edited) as one account of the papers."""

CAPTIONS = {
    "gradient-flow": (
        "Training adjusts every layer by the gradient that reaches it from the loss, passed backwards "
        "through every layer above it. In a plain net that signal is multiplied by each layer's Jacobian in "
        "turn: with BN at initialisation it grows by about 1.2x per layer towards the input (Yang et al. "
        "2019). With identity shortcuts and nothing after the addition (pre-activation), "
        "∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l) (He et al. 2016): the \"+1\" carries the gradient between any two "
        "blocks, and the branches add to it. This runs one forward and one backward pass at initialisation. "
        "Look for: the gradient per element (RMS; stages differ in size) growing towards the input for every "
        "net, by orders of magnitude for deep plain nets and by a small factor for residual ones; the fitted "
        "growth per layer within each stage; the \"+1\" view, where the pre-activation net passes the whole "
        "gradient through every shortcut and the post-activation net's ReLU after the addition lets only a "
        "share through; and the branch's energy share (its projection on the gradient; with the shortcut's "
        "it adds to 1)."),
    "shattering": (
        "Balduzzi et al. 2017: walk in a straight line from one image to another and record, at each of the "
        "inputs on the way, the gradient of one class score with respect to the input. Each pixel's gradient "
        "is then a signal along the line. In a deep plain net it behaves like white noise (it is "
        "\"shattered\"): its autocorrelation is gone after one step and its power spectrum is flat, so it "
        "says little about the neighbourhood. A residual net's behaves like brown noise: correlated over "
        "many steps, its power falling with frequency. Look for: the plain curves' autocorrelation along the "
        "line falling to zero at lag 1, the residual curves' staying high, and the spectrum slopes (0 white, "
        "-2 brown). The correlation across pixels is a second view, not the paper's statistic."),
    "paths": (
        "Veit et al. 2016: unrolling x_{i+1} = x_i + F(x_i) over n blocks writes the output as a sum over "
        "2ⁿ paths, each passing through the branch of some blocks and the shortcut of the others. Path "
        "lengths follow a Binomial(n, 1/2): most paths are of medium length. Yet the gradient a path carries "
        "shrinks fast with its length, so the gradient that trains the net comes mostly from short paths. "
        "Look for: where the third panel (each length's part of ‖g‖², C(n,k)·E‖g_k‖²/‖g‖²) peaks, far left "
        "of the first panel's peak. The parts add to 1 only if path gradients are orthogonal; their sum is "
        "given. A few draws on small random training batches show the shape; the paper averages about "
        "1,000 draws per length."),
    "lesion": (
        "If a ResNet is an ensemble of paths, deleting one block removes only some of them, and the net "
        "should survive (Veit et al. 2016): the block is replaced by its shortcut. In a plain net every "
        "signal goes through every layer, so removing any layer is catastrophic. Look for: the residual "
        "net's error staying near its base line for most single deletions (downsampling blocks, ▲, hurt "
        "more), the error rising smoothly, not abruptly, with the number of deleted blocks, and swapping "
        "random pairs of same-shape blocks costing little (error against Kendall's τ). The decomposition "
        "tests x_L = x_l + ΣF(x_i) with the branches' own outputs: its residual error is zero only for "
        "pre-activation nets."),
    "responses": (
        "He et al. 2015, Fig. 7: in a trained net, the std of every 3x3 layer's output after BN and before the "
        "ReLU or the addition, on test images with BN in eval mode. If residual functions are closer to zero "
        "than unreferenced ones, residual nets respond less than plain nets of the same depth, and deeper "
        "ResNets less than shallower ones. Look for: the residual run's line below its plain twin's, by "
        "layer and sorted by magnitude. Pre-activation and bottleneck nets measure what the paper's quantity "
        "is for them (the result says which)."),
    "interpolate": (
        "Goodfellow et al. 2015: follow the straight line in weight space from the initial weights (α = 0) "
        "to the trained ones (α = 1) and beyond. A smooth descent without bumps means training had a simple "
        "road to travel. BN's running statistics move along the line with the weights (the paper's way); "
        "recomputing them at each α is an option. The line needs the run's own initial weights "
        "(checkpoints/init.pt): runs trained before runs saved them cannot be interpolated."),
    "landscape": (
        "Li et al. 2018: the loss around the trained weights along two random directions, each filter of a "
        "direction scaled to the norm of the matching filter of the weights (so nets of different scale "
        "compare), drawn as raw-loss contours at levels 0.1 to 10 and as the surface ln(min(loss, 10) + 0.1). "
        "In the paper plain nets are still nearly convex at 20 layers and turn chaotic, full of ridges and "
        "holes, from about 56 layers; residual nets keep a wide smooth bowl at every depth. Seeing the chaos "
        "needs a trained plain-56 (on CIFAR-10). Look for: a plain net and its residual twin side by side "
        "on one colour scale, and the width of the central basin."),
}
