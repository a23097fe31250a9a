"""Image-quality metrics: FID and KID from Inception-v3 pool features."""
