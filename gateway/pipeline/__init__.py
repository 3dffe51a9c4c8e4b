"""One analysis from a photo in hand to a stored answer; the drawn photo; batches and albums."""
