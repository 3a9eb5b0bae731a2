"""Box-aware transforms on real coordinates and pixels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.pipelines import box_ops


def _image_with_block(h, w, top, left, bottom, right):
    image = np.zeros((h, w, 3), np.uint8)
    image[top:bottom, left:right] = 255
    return image


def test_letterbox_moves_boxes_with_the_padding_and_unletterbox_inverts_it():
    # A 100 x 50 (h x w) image into 64 x 64: scale 0.64, the image fills 64 x 32 at left 16.
    image = tf.constant(_image_with_block(100, 50, 10, 10, 50, 30))
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.6]])  # the block: rows 10..50, cols 10..30
    out, moved, window = box_ops.letterbox(image, boxes, (64, 64), "pad")
    np.testing.assert_allclose(window.numpy(), [0.0, 0.25, 1.0, 0.5])
    np.testing.assert_allclose(moved.numpy(), [[0.1, 0.35, 0.5, 0.55]], atol=1e-6)
    pixels = out.numpy()
    assert pixels[:, :16].max() == 0 and pixels[:, 48:].max() == 0  # the padding
    assert pixels[int(0.3 * 64), int(0.45 * 64)].min() == 255  # inside the moved box
    back = box_ops.unletterbox(moved, window, tf.constant([100.0, 50.0]))
    np.testing.assert_allclose(back.numpy(), [[10.0, 10.0, 50.0, 30.0]], atol=1e-4)


def test_stretch_keeps_fractional_boxes():
    image = tf.zeros((30, 60, 3), tf.uint8)
    boxes = tf.constant([[0.1, 0.2, 0.3, 0.4]])
    out, moved, window = box_ops.letterbox(image, boxes, (32, 32), "stretch")
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(moved.numpy(), boxes.numpy())
    np.testing.assert_allclose(window.numpy(), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="pad.*stretch"):
        box_ops.letterbox(image, boxes, (32, 32), "crop")


def test_flip_moves_pixels_and_boxes_together():
    image = tf.constant(_image_with_block(40, 40, 4, 8, 12, 20), tf.float32) / 255
    boxes = tf.constant([[0.1, 0.2, 0.3, 0.5]])
    np.testing.assert_allclose(box_ops.flip_boxes(boxes).numpy(), [[0.1, 0.5, 0.3, 0.8]], atol=1e-6)
    np.testing.assert_allclose(
        box_ops.flip_boxes(boxes, horizontal=False).numpy(), [[0.7, 0.2, 0.9, 0.5]], atol=1e-6
    )
    # Find a seed that flips, then check the block sits under the flipped box.
    for s in range(20):
        flipped, fb = box_ops.random_flip(image, boxes, tf.constant([s, 0]))
        if not np.allclose(fb.numpy(), boxes.numpy()):
            break
    np.testing.assert_allclose(fb.numpy(), [[0.1, 0.5, 0.3, 0.8]], atol=1e-6)
    cols = np.flatnonzero(flipped.numpy()[8, :, 0] > 0.5)
    assert (cols.min(), cols.max() + 1) == (20, 32)  # 0.5 * 40 .. 0.8 * 40


def test_crop_boxes_clip_and_drop_policies():
    window = [0.0, 0.0, 0.5, 0.5]
    boxes = tf.constant(
        [
            [0.1, 0.1, 0.2, 0.2],  # inside
            [0.4, 0.4, 0.6, 0.6],  # a quarter of it inside
            [0.7, 0.7, 0.9, 0.9],  # outside
        ]
    )
    classes = tf.constant([0, 1, 2])
    b, c = box_ops.crop_boxes(boxes, classes, window, "clip", min_visible=0.2)
    np.testing.assert_allclose(b.numpy(), [[0.2, 0.2, 0.4, 0.4], [0.8, 0.8, 1.0, 1.0]], atol=1e-6)
    assert c.numpy().tolist() == [0, 1]
    b, c = box_ops.crop_boxes(boxes, classes, window, "clip", min_visible=0.3)
    assert c.numpy().tolist() == [0]
    b, c = box_ops.crop_boxes(boxes, classes, window, "drop")
    assert c.numpy().tolist() == [0]
    np.testing.assert_allclose(b.numpy(), [[0.2, 0.2, 0.4, 0.4]], atol=1e-6)


def test_crop_and_scale_zoom_in_and_out_on_pixels():
    # A white block over rows 16..32 and cols 32..48 of a 64 x 64 image.
    image = tf.constant(_image_with_block(64, 64, 16, 32, 32, 48), tf.float32) / 255
    boxes = tf.constant([[0.25, 0.5, 0.5, 0.75]])
    classes = tf.constant([3])
    out, b, c = box_ops.crop_and_scale(image, boxes, classes, [0.0, 0.5, 0.5, 1.0], (64, 64))
    np.testing.assert_allclose(b.numpy(), [[0.5, 0.0, 1.0, 0.5]], atol=1e-6)
    assert c.numpy().tolist() == [3]
    assert out.numpy()[40:60, 4:28].min() > 0.99 and out.numpy()[4:28, 40:60].max() < 0.01
    # Zoom out: a window twice the image, centred; the image shrinks into the middle.
    out, b, _ = box_ops.crop_and_scale(image, boxes, classes, [-0.5, -0.5, 1.5, 1.5], (64, 64))
    np.testing.assert_allclose(b.numpy(), [[0.375, 0.5, 0.5, 0.625]], atol=1e-6)
    assert out.numpy()[26, 34].min() > 0.99 and out.numpy()[:12].max() == 0


def test_random_crop_scale_keeps_boxes_consistent_with_pixels():
    image = tf.constant(_image_with_block(64, 64, 16, 16, 48, 48), tf.float32) / 255
    boxes = tf.constant([[0.25, 0.25, 0.75, 0.75]])
    for s in range(5):
        out, b, c = box_ops.random_crop_scale(
            image, boxes, tf.constant([0]), tf.constant([s, 7]), (0.6, 1.4), "clip", 0.1
        )
        assert out.shape == (64, 64, 3)
        y0, x0, y1, x1 = (b.numpy()[0] * 64).round().astype(int)
        inside = out.numpy()[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
        assert inside.min() > 0.9  # the box still covers the block exactly
        rows = np.flatnonzero(out.numpy()[:, (x0 + x1) // 2, 0] > 0.5)
        assert abs(rows.min() - y0) <= 1 and abs(rows.max() + 1 - y1) <= 1


def test_pad_and_unpad_boxes():
    boxes, classes = box_ops.pad_boxes(tf.constant([[0.1, 0.1, 0.2, 0.2]]), tf.constant([2]), 3)
    assert boxes.shape == (3, 4) and classes.numpy().tolist() == [2, -1, -1]
    b, c = box_ops.unpad_boxes(boxes, classes)
    assert b.shape == (1, 4) and c.numpy().tolist() == [2]
    # More boxes than max_boxes are truncated.
    boxes, classes = box_ops.pad_boxes(tf.zeros((5, 4)), tf.range(5), 2)
    assert classes.numpy().tolist() == [0, 1]
