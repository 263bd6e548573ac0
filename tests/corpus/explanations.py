"""Why the detector's verdict on a corpus file is FAILED, or names another start for the
suspicious data than the oracle. Every such file must be listed here; the corpus test fails on
an unexplained one and on an explanation that no longer applies."""

FAILED = {
    "pillow/apng/syntax_num_frames_zero.png": (
        "IHDR, acTL and IEND only (an APNG syntax test): no IDAT chunk, so no image data. "
        "Pillow: cannot load this image."
    ),
    "pillow/bmp/b/badbitcount.bmp": (
        "bmpsuite 'bad' set: a bit depth of 30000 describes no pixel layout. "
        "Pillow: unsupported BMP pixel depth."
    ),
    "pillow/bmp/b/badwidth.bmp": (
        "bmpsuite 'bad' set: a width of -127 describes no pixel array. "
        "Pillow refuses it (decompression bomb: it reads the width as 4294967169)."
    ),
    "pillow/broken.png": (
        "The PNG signature followed by bytes that are no chunk: no IHDR, no image data. "
        "Pillow cannot identify it; ExifTool: PNG image did not start with IHDR."
    ),
    "pillow/decompression_bomb.gif": (
        "44 bytes: header, graphic control extension and an image descriptor whose LZW minimum "
        "code size is 0x8F (at most 12 is valid), then nothing: no image data. "
        "Pillow refuses it (decompression bomb); hachoir: cut off inside the image block."
    ),
    "pillow/zero_width.gif": (
        "Same 44-byte shape as decompression_bomb.gif with a zero-width screen: an image "
        "descriptor with LZW minimum code size 0x8F and no data. Pillow cannot identify it; "
        "hachoir: cut off inside the image block."
    ),
    "pillow/l2rgb_read.bmp": (
        "57 bytes that reproduce a decoder bug: the pixel data offset (0xFFFF3030) lies past the "
        "end of the file, so there are no pixels. Pillow: image file is truncated."
    ),
    "pillow/ultrahdr.jpg": (
        "Cut off right after the SOS header of the primary picture: no entropy-coded data at all "
        "(its MPF index declares a gain-map picture at offset 513025, far past the 48 kB left). "
        "Pillow: image file is truncated; ExifTool: JPEG format error."
    ),
}

BEGIN_DIFFERS = {
    "pillow/sugarshack_ifd_offset.mpo": (
        "Two bytes were inserted into the MPF segment (IFD offset 10 instead of 8) without moving "
        "the MP Entry offsets, so the index declares the second picture 2 bytes before its SOI. "
        "The detector takes a declared picture only where its SOI is, so the second picture is "
        "undeclared and suspicious from the first picture's end (60009); ExifTool takes the "
        "declared range as the picture and reports the 2 bytes left at the end as an unknown "
        "trailer (120198). Both say SUSPICIOUS."
    ),
}
