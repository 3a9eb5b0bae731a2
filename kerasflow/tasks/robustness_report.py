"""The robustness and faithfulness parts of an evaluation report: tables and figures, any task.

Reads what :mod:`kerasflow.training.robustness` adds to a report
(``report["robustness"]`` and ``report["faithfulness"]``); writes
``corruption_curves_<split>.png``, ``adversarial_<split>.png``,
``faithfulness_<split>.png`` and ``randomization_<split>.png``.
"""

from __future__ import annotations

from pathlib import Path

from kerasflow.tasks import plots, report_html

# File names (their headings and order on the page are in report_html.FIGURES).
CORRUPTION_PNG = "corruption_curves_{split}.png"
ADVERSARIAL_PNG = "adversarial_{split}.png"
FAITHFULNESS_PNG = "faithfulness_{split}.png"
RANDOMIZATION_PNG = "randomization_{split}.png"


def write_figures(report: dict, out: Path, split: str) -> list[Path]:
    """The figures of the report's robustness and faithfulness parts that it has."""
    written = []
    result = report.get("robustness") or {}
    if result.get("corruption"):
        path = out / CORRUPTION_PNG.format(split=split)
        written.append(plots.corruption_curves_png(result["corruption"], path))
    if result.get("adversarial"):
        path = out / ADVERSARIAL_PNG.format(split=split)
        written.append(plots.epsilon_curve_png(result["adversarial"], path))
    faith = report.get("faithfulness")
    if faith:
        path = out / FAITHFULNESS_PNG.format(split=split)
        written.append(plots.deletion_insertion_png(faith["methods"], path))
        if faith.get("randomization"):
            path = out / RANDOMIZATION_PNG.format(split=split)
            written.append(plots.randomization_png(faith["randomization"], path))
    return written


def html_section(report: dict) -> str:
    """Tables of the robustness and faithfulness parts (empty when the report has none)."""
    parts = []
    result = report.get("robustness") or {}
    corr = result.get("corruption")
    if corr:
        metric = corr["metric"]
        rows = [
            [name, *values, corr["per_corruption"][name]] for name, values in corr["scores"].items()
        ]
        rows.append(["mean over all", *([None] * len(corr["severities"])), corr["mean"]])
        parts += [
            f"<h2>Corruption robustness ({metric})</h2>",
            f"<p>clean {report_html.fmt(corr['clean'])}; mean over corruptions and severities "
            f"{report_html.fmt(corr['mean'])}, relative to clean "
            f"{report_html.fmt(corr['relative'])}.</p>",
            report_html.table(
                ["corruption", *(f"severity {s}" for s in corr["severities"]), "mean"], rows
            ),
        ]
    adv = result.get("adversarial")
    if adv:
        metric = adv["metric"]
        rows = [
            [f"{e:g}", f, p]
            for e, f, p in zip(adv["epsilons"], adv["fgsm"], adv["pgd"], strict=True)
        ]
        rows.append([f"{adv['large_epsilon']:g} (masking check)", None, adv["pgd_large"]])
        masking = adv["gradient_masking"]
        verdict = (
            "Gradient masking suspected: " + "; ".join(masking["reasons"])
            if masking["suspected"]
            else "No sign of gradient masking (PGD at most FGSM + "
            f"{masking['tolerance']:g} at each epsilon; at most {masking['floor']:g} left at "
            "the large epsilon)."
        )
        parts += [
            f"<h2>Adversarial robustness ({metric}, L-inf, 0..255 pixels)</h2>",
            f"<p>clean {report_html.fmt(adv['clean'])} on {adv['num_examples']} images; PGD "
            f"{adv['pgd_steps']} steps. {verdict}</p>",
            report_html.table(["epsilon", f"FGSM {metric}", f"PGD {metric}"], rows),
        ]
    faith = report.get("faithfulness")
    if faith:
        rows = [[m, c["deletion_auc"], c["insertion_auc"]] for m, c in faith["methods"].items()]
        parts += [
            "<h2>Explanation faithfulness</h2>",
            f"<p>{faith['images']} images, {faith['steps']} steps, pixels removed to "
            f"{faith['baseline']}. Deletion AUC: lower is better; insertion AUC: higher is "
            "better; <em>random</em> is a random pixel order.</p>",
            report_html.table(["method", "deletion AUC", "insertion AUC"], rows),
        ]
        rand = faith.get("randomization")
        if rand:
            methods = list(rand["spearman"])
            rows = [
                [f"{i + 1}: {layer}", *(rand["spearman"][m][i] for m in methods)]
                for i, layer in enumerate(rand["layers"])
            ]
            parts += [
                "<h3>Cascading randomisation: Spearman correlation with the trained model's maps"
                "</h3>",
                report_html.table(["layers randomised (top first)", *methods], rows),
            ]
    return "\n".join(parts)
