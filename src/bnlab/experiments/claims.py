"""What each claim C01–C14 says, how bnlab tests it, and what to compare the result with.

This is the report's text for every claim, measured or not. It restates, in English, the claims of the document
bnlab was created from (`shared/seed/bn-explanation.ko.md`, a popular explanation of Batch Normalization in
Korean) as `shared/seed/claims.md` numbers them. The experiment modules decide the verdicts; this module only
describes. References are given as citations with arXiv identifiers (the report carries no web links, so opening
it makes no network request).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bnlab.results import CLAIM_IDS


@dataclass(frozen=True)
class ClaimInfo:
    """The fixed description of one claim (plain strings, printed as text in the report)."""

    id: str
    title: str  # the claim's one title: the verdict table, the report and the protocol page print it
    statement: str  # what the explanation says, faithfully, in English
    how_tested: str  # the experiment bnlab runs (all scales; the module states the scale's protocol)
    reference: str  # the published protocol / number to compare with
    references: tuple[str, ...]  # citations

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["references"] = list(self.references)
        return data


IOFFE = ("Ioffe, S. & Szegedy, C. (2015). Batch Normalization: Accelerating Deep Network Training by Reducing "
         "Internal Covariate Shift. ICML 2015. arXiv:1502.03167")
SANTURKAR = ("Santurkar, S., Tsipras, D., Ilyas, A. & Madry, A. (2018). How Does Batch Normalization Help "
             "Optimization? NeurIPS 2018. arXiv:1805.11604")
BJORCK = ("Bjorck, J., Gomes, C., Selman, B. & Weinberger, K. Q. (2018). Understanding Batch Normalization. "
          "NeurIPS 2018. arXiv:1806.02375")
LI_LANDSCAPE = ("Li, H., Xu, Z., Taylor, G., Studer, C. & Goldstein, T. (2018). Visualizing the Loss Landscape of "
                "Neural Nets. NeurIPS 2018. arXiv:1712.09913")
LI_ARORA = ("Li, Z. & Arora, S. (2020). An Exponential Learning Rate Schedule for Deep Learning. ICLR 2020. "
            "arXiv:1910.07454")
ARORA_LI_LYU = ("Arora, S., Li, Z. & Lyu, K. (2019). Theoretical Analysis of Auto Rate-Tuning by Batch "
                "Normalization. ICLR 2019. arXiv:1812.03981")
VAN_LAARHOVEN = ("van Laarhoven, T. (2017). L2 Regularization versus Batch and Weight Normalization. "
                 "arXiv:1706.05350")
YANG = ("Yang, G., Pennington, J., Rao, V., Sohl-Dickstein, J. & Schoenholz, S. S. (2019). A Mean Field Theory "
        "of Batch Normalization. ICLR 2019. arXiv:1902.08129")
LUO = ("Luo, P., Wang, X., Shao, W. & Peng, Z. (2019). Towards Understanding Regularization in Batch "
       "Normalization. ICLR 2019. arXiv:1809.00846")
WU_JOHNSON = "Wu, Y. & Johnson, J. (2021). Rethinking \"Batch\" in BatchNorm. arXiv:2105.07576"
HOFFER = ("Hoffer, E., Hubara, I. & Soudry, D. (2017). Train Longer, Generalize Better: Closing the "
          "Generalization Gap in Large Batch Training of Neural Networks. NeurIPS 2017. arXiv:1705.08741")
FIXUP = ("Zhang, H., Dauphin, Y. N. & Ma, T. (2019). Fixup Initialization: Residual Learning Without "
         "Normalization. ICLR 2019. arXiv:1901.09321")
GHORBANI = ("Ghorbani, B., Krishnan, S. & Xiao, Y. (2019). An Investigation into Neural Net Optimization via "
            "Hessian Eigenvalue Density. ICML 2019. arXiv:1901.10159")
SRIVASTAVA = ("Srivastava, N., Hinton, G., Krizhevsky, A., Sutskever, I. & Salakhutdinov, R. (2014). Dropout: A "
              "Simple Way to Prevent Neural Networks from Overfitting. JMLR 15")

_CLAIMS: tuple[ClaimInfo, ...] = (
    ClaimInfo(
        "C01", "BN's computation (train and inference)",
        "For a mini-batch B = {x_1..x_m}, BN computes the batch mean μ_B = (1/m) Σ x_i and the biased variance "
        "σ²_B = (1/m) Σ (x_i − μ_B)², normalises x̂_i = (x_i − μ_B) / √(σ²_B + ε), then scales and shifts with "
        "the learnable parameters γ and β: y_i = γ x̂_i + β. At inference it uses population statistics instead "
        "of the batch's.",
        "bnlab's from-scratch layer is compared with reference implementations (torch's BatchNorm and a float64 "
        "computation): outputs, gradients with respect to input, γ and β, and the running statistics; the "
        "precise population statistics are checked against Ioffe's Algorithm 2 (unbiased variance, m/(m−1)).",
        "Ioffe & Szegedy, Algorithm 1 (training transform) and Algorithm 2 (inference with population "
        "statistics).",
        (IOFFE,),
    ),
    ClaimInfo(
        "C02", "γ and β restore representational power",
        "γ (scale) and β (shift) are learnable. Normalisation alone forces each activation to mean 0 and "
        "variance 1, which traps it in the near-linear regime of a nonlinearity such as the sigmoid; γ and β give "
        "the network the freedom to restore the original distribution (the identity mapping) when it needs to, "
        "so no representational power is lost.",
        "(a) Identity recovery: with γ = √(σ² + ε) and β = μ the layer returns its input exactly; (b) the "
        "fraction of sigmoid inputs inside the near-linear band, BN with and without affine parameters, over "
        "training; (c) test accuracy with versus without the affine parameters.",
        "Ioffe & Szegedy, Section 3; Santurkar et al., Observation 4.3.",
        (IOFFE, SANTURKAR),
    ),
    ClaimInfo(
        "C03", "BN reduces internal covariate shift",
        "The original reason (Ioffe & Szegedy): as the parameters of earlier layers change during training, the "
        "distribution of each layer's input keeps moving (internal covariate shift), so every layer chases a "
        "moving target; this forces small learning rates and careful initialisation. BN normalises the inputs to "
        "a fixed mean and variance, which suppresses the shift between layers and speeds up training.",
        "Two measures side by side: (a) distributional — the 15th, 50th and 85th percentiles of a sigmoid input "
        "over training (Ioffe Fig. 1); (b) Santurkar's Definition 2.1 — per layer, ‖G − G′‖₂ and cos(G, G′), "
        "where G′ is the layer's gradient after only the earlier layers have taken their step, on the same batch.",
        "Ioffe Fig. 1 (MNIST, 3×100 sigmoid net, batch 60, 50k steps); Santurkar Fig. 3 (VGG on CIFAR-10 and a "
        "25-layer deep linear net: BN does not reduce ICS; in the linear net G and G′ become nearly "
        "uncorrelated).",
        (IOFFE, SANTURKAR),
    ),
    ClaimInfo(
        "C04", "ICS is not the main reason BN helps",
        "Santurkar et al. showed that reducing internal covariate shift is not the main reason for BN's success "
        "(in some cases BN does not even reduce it): a BN network with injected, time-varying noise of non-zero "
        "mean and non-unit variance after every BN layer trains about as well as plain BN, and better than a "
        "network without BN.",
        "Noisy BN — per step and unit μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25); per element m ~ U(μ_t ± 0.1), "
        "s ~ N(σ_t, 0.1); a ← s·a + m — versus BN versus no BN, plus the same noise on a network without BN; "
        "training curves and final accuracy.",
        "Santurkar et al., Fig. 2.",
        (SANTURKAR,),
    ),
    ClaimInfo(
        "C05", "BN makes the loss smoother (Lipschitz)",
        "The real reason, according to Santurkar et al.: BN smooths the loss landscape by lowering the Lipschitz "
        "constant of the loss, so that moving the weights in the gradient direction does not change the loss "
        "abruptly.",
        "At steps during training, the loss at w − ηg on the same batch for step sizes η ∈ [½, 4] × lr; the "
        "min–max band of these losses (\"loss variation\"), BN versus no BN.",
        "Santurkar et al., Fig. 4(a).",
        (SANTURKAR,),
    ),
    ClaimInfo(
        "C06", "BN makes the gradient more predictive (β-smoothness)",
        "BN makes the gradient Lipschitz with a smaller constant: ‖∇L(W₁) − ∇L(W₂)‖ ≤ λ‖W₁ − W₂‖ with a smaller "
        "λ, so the gradient does not swing wildly when the weights change a little.",
        "The same along-gradient probes: the band of ‖∇L(w − ηg) − g‖ (\"gradient predictiveness\") and the "
        "maximum of ‖∇L(w − ηg) − g‖ / ‖ηg‖ (\"effective β-smoothness\"); also the Hessian's top eigenvalue over "
        "training.",
        "Santurkar et al., Fig. 4(b, c): about two orders of magnitude smaller early in training.",
        (SANTURKAR, GHORBANI),
    ),
    ClaimInfo(
        "C07", "BN allows much larger learning rates",
        "Because BN irons the landscape flat and smooth, a much larger learning rate can be used without "
        "divergence, and training converges quickly.",
        "A learning-rate sweep over several decades, BN versus no BN: the largest stable learning rate, the final "
        "accuracy at each learning rate, and whether the two curves coincide at small learning rates (Bjorck et "
        "al.).",
        "Santurkar Fig. 1 (lr 0.1 vs 0.5); Ioffe's BN-x5 / BN-x30 (5× and 30× the learning rate); Bjorck et al. "
        "2018.",
        (SANTURKAR, IOFFE, BJORCK),
    ),
    ClaimInfo(
        "C08", "The BN Jacobian rescales by 1/σ and projects",
        "By the chain rule ∇ₓL = (∂x̂/∂x) ∇_x̂ L, and the BN Jacobian is (in simplified form) "
        "∂x̂/∂x ≈ (1/σ)(I − 11ᵀ/m − x̂x̂ᵀ/m): gradients are rescaled by 1/σ (a large variance automatically "
        "shrinks the gradient) and projected off the directions 1 and x̂ (the component along the data is "
        "removed), which bounds how fast the loss can change.",
        "The explicit Jacobian versus automatic differentiation; its eigenvalues (zero along 1 and x̂, the rest "
        "1/σ); the identity and bound of Santurkar's Theorem 4.1 checked on real layers.",
        "Santurkar et al., Theorem 4.1 (the exact identity has constant c = 1/m; check which constant the "
        "published bound uses).",
        (SANTURKAR,),
    ),
    ClaimInfo(
        "C09", "Scale invariance acts as an adaptive learning rate",
        "For a weight matrix W and a scalar α, BN(αWx) = BN(Wx): the α cancels in the standard deviation, so the "
        "weights' magnitude does not affect the forward pass. In backpropagation ∂L/∂(αW) = (1/α) ∂L/∂W: when the "
        "weights grow the gradient shrinks and vice versa, which works like an adaptive learning rate and is why "
        "BN is less sensitive to initialisation.",
        "Forward and backward checks over α; ⟨∇_W L, W⟩ = 0; under SGD the weight norm grows and the effective "
        "learning rate η/‖W‖² falls; the interplay with weight decay.",
        "Ioffe & Szegedy, Section 3.3; Li & Arora 2019 (exponential learning-rate schedules).",
        (IOFFE, LI_ARORA, ARORA_LI_LYU, VAN_LAARHOVEN),
    ),
    ClaimInfo(
        "C10", "BN makes training insensitive to initialisation",
        "Thanks to weight-scale invariance, the gradient flows stably even when the weight initialisation is not "
        "perfect: BN reduces the dependence on initialisation.",
        "An initialisation-scale sweep (e.g. ×10⁻² … ×10² of the default initialisation), BN versus no BN: "
        "whether the network trains and its final accuracy.",
        "No published number; compare with the observation that normalisation-free deep networks need careful "
        "initialisation (e.g. Fixup).",
        (IOFFE, FIXUP),
    ),
    ClaimInfo(
        "C11", "BN prevents vanishing and exploding gradients",
        "BN helps keep the eigenvalues of the layers' Jacobian matrices near 1 during backpropagation, which "
        "prevents vanishing (and exploding) gradients even in deep networks.",
        "Per-layer gradient norms and the singular values of the input–output Jacobian versus depth, at "
        "initialisation and after training, for plain and residual networks, BN versus no BN.",
        "Yang et al. 2019: in deep plain BN networks gradients explode at initialisation, ‖g‖² growing by "
        "≈ π/(π−1) ≈ 1.467 per ReLU layer; beyond about 50 layers they are untrainable.",
        (YANG,),
    ),
    ClaimInfo(
        "C12", "BN regularises like a weak Dropout",
        "During training the mini-batch mean and variance inject statistical noise, so BN also brings, as a "
        "bonus, a slight regularising effect similar to Dropout (it reduces overfitting).",
        "The train–test gap for BN versus no BN versus Dropout; the effect versus the normalisation batch size "
        "(ghost batches); BN with frozen population statistics (no batch noise) as the control.",
        "Ioffe & Szegedy, Section 3.4; Luo et al. 2019; Wu & Johnson 2021.",
        (IOFFE, LUO, WU_JOHNSON, HOFFER, SRIVASTAVA),
    ),
    ClaimInfo(
        "C13", "BN converges faster to a good minimum",
        "BN accelerates optimisation: with the smoothed landscape the network converges quickly to a good "
        "minimum.",
        "The number of steps to reach a target test accuracy (or loss), BN versus no BN, each network at its "
        "best learning rate.",
        "Ioffe & Szegedy: 14× fewer training steps on Inception.",
        (IOFFE, SANTURKAR),
    ),
    ClaimInfo(
        "C14", "Without BN the landscape is rugged; with BN it is smooth",
        "Without BN the loss landscape is very bumpy (non-convex and rugged, with cliffs and ravines), so "
        "training falls into local minima or gradients explode; BN irons it flat and smooth. This is what the "
        "offered PyTorch visualisation of the loss landscape with and without BN should show.",
        "1-D and 2-D loss landscapes along filter-normalised random directions (Li et al. 2018), BN versus no "
        "BN, drawn at equal scale; sharpness (the Hessian's top eigenvalue and trace) side by side.",
        "Li et al. 2018; Santurkar et al., Section 3.",
        (LI_LANDSCAPE, SANTURKAR, GHORBANI),
    ),
)

CLAIMS: dict[str, ClaimInfo] = {c.id: c for c in _CLAIMS}
assert tuple(CLAIMS) == CLAIM_IDS

