"""Photos as bytes and pixels: decode, orientation and colour, privacy, quality, drawing."""

# The formats we read, as error messages, /docs and the try-it page name them.
ACCEPTED_FORMATS = "JPEG (Ultra HDR and MPO included), PNG, WebP, BMP, TIFF, HEIC/HEIF or AVIF"
# What the try-it page's file picker offers: MIME types, and extensions for systems that know no
# MIME type for HEIC or AVIF.
UPLOAD_TYPES = (
    "image/jpeg,image/png,image/webp,image/bmp,image/tiff,image/heic,image/heif,image/avif,"
    ".jpg,.jpeg,.png,.webp,.bmp,.tif,.tiff,.heic,.heif,.avif"
)
