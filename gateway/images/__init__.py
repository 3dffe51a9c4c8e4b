"""Photos as bytes and pixels: decode, orientation and colour, privacy, quality, drawing."""
