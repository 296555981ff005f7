"""Comparing explanation methods: the evaluation (:mod:`~hagxai.report.evaluate`), its rows
(:mod:`~hagxai.report.methods`), the human row (:mod:`~hagxai.report.human`), the
model-randomisation check (:mod:`~hagxai.report.randomisation`), statistics
(:mod:`~hagxai.report.stats`), pictures (:mod:`~hagxai.report.plots`) and the HTML report
(:mod:`~hagxai.report.html`)."""
