"""Publishing: what people read and download — the dataset card, the HTML report, the Hub push.

``card`` fills the card from the run's own records; ``report`` draws report.html and its plots;
``hub`` uploads data, records and card to the Hugging Face Hub.
"""
