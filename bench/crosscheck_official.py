"""Cross-check our WIDER AP against the official MATLAB toolkit, run under GNU Octave.

    python bench/crosscheck_official.py --toolkit path/to/eval_tools --pred out/mnet25 \\
                                        --gt data/widerface/ground_truth

--toolkit is your copy of the official WIDER FACE eval_tools (read_pred.m, norm_score.m, evaluation.m,
boxoverlap.m, plot/VOCap.m); nothing of it ships here. The toolkit runs unchanged: a small `save`
wrapper drops the '-v7.3' flag that Octave cannot write, in a temporary working folder that also
receives the toolkit's plot output. Prints both APs per setting and exits 1 when one differs by more
than --tol. Needs octave-cli (Debian: apt-get install octave).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcnn.dataset import widerface_eval as W  # noqa: E402

SAVE_WRAPPER = r"""function save(varargin)
  % Octave cannot write '-v7.3' files: save the same variables in its default format instead.
  args = varargin(~strcmp(varargin, '-v7.3'));
  quoted = cellfun(@(s) ['''' strrep(s, '''', '''''') ''''], args, 'UniformOutput', false);
  evalin('caller', ['builtin(''save'', ' strjoin(quoted, ', ') ');']);
end
"""
DRIVER = r"""function crosscheck_driver(pred_dir, gt_root)
pred_list = read_pred(pred_dir, [gt_root '/wider_face_val.mat']);
norm_pred_list = norm_score(pred_list);
settings = {'easy', 'medium', 'hard'};
for s = 1:3
  evaluation(norm_pred_list, sprintf('%s/wider_%s_val.mat', gt_root, settings{s}), [settings{s} '_val'], 'x', 'ours');
  load(sprintf('./plot/baselines/Val/x/ours/wider_pr_info_ours_%s_val.mat', settings{s}));
  printf('AP %s %.12f\n', settings{s}, VOCap(pr_cruve(:,2), pr_cruve(:,1)));
end
end
"""


def main():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--toolkit', required=True, help='folder of the official eval_tools')
    parser.add_argument('--pred', required=True, help='prediction folder (<event>/<image>.txt)')
    parser.add_argument('--gt', required=True, help='folder of wider_{face,easy,medium,hard}_val.mat')
    parser.add_argument('--tol', type=float, default=1e-6)
    args = parser.parse_args()
    if shutil.which('octave-cli') is None:
        sys.exit('octave-cli not found (apt-get install octave)')
    for name in ('read_pred.m', 'norm_score.m', 'evaluation.m', 'boxoverlap.m', os.path.join('plot', 'VOCap.m')):
        if not os.path.isfile(os.path.join(args.toolkit, name)):
            sys.exit('not the official eval_tools folder: %s is missing' % os.path.join(args.toolkit, name))
    with tempfile.TemporaryDirectory() as work:
        for name, text in (('save.m', SAVE_WRAPPER), ('crosscheck_driver.m', DRIVER)):
            with open(os.path.join(work, name), 'w') as f:
                f.write(text)
        toolkit = os.path.abspath(args.toolkit)
        cmd = "addpath('%s'); addpath('%s'); addpath('%s'); crosscheck_driver('%s', '%s')" % (
            work, toolkit, os.path.join(toolkit, 'plot'), os.path.abspath(args.pred), os.path.abspath(args.gt))
        run = subprocess.run(['octave-cli', '--no-gui', '--eval', cmd], cwd=work, capture_output=True, text=True)
    official = {m.group(1): float(m.group(2)) for m in re.finditer(r'AP (\w+) ([-\d.eE]+|NaN)', run.stdout)}
    if len(official) != 3:
        sys.exit('the official toolkit did not report three APs:\n%s\n%s' % (run.stdout[-2000:], run.stderr[-2000:]))
    ours, _, _ = W.evaluate_folder(args.pred, W.load_mat_gt(args.gt))
    worst = 0.0
    print('%-8s %16s %16s %10s' % ('setting', 'official', 'ours', '|diff|'))
    for s in W.SETTINGS:
        diff = abs(official[s] - ours[s]['ap'])
        worst = max(worst, diff)
        print('%-8s %16.12f %16.12f %10.2e' % (s, official[s], ours[s]['ap'], diff))
    return 0 if worst <= args.tol else 1


if __name__ == '__main__':
    sys.exit(main())
